"""Entry point of the GRPO recipe, which lives in the package (depthlm/recipes/grpo.py: docs, API).

    accelerate launch --config_file recipes/accelerate/zero2.yaml recipes/grpo.py \
        --config recipes/configs/qwen2_5_vl_3b_grpo.yaml

is the same run as ``depthlm grpo --config ... --accelerate_config recipes/accelerate/zero2.yaml``.
"""

from depthlm.recipes.grpo import cli

if __name__ == "__main__":
    raise SystemExit(cli())
