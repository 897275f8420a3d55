"""Entry point of the SFT recipe, which lives in the package (depthlm/recipes/sft.py: docs, API).

    accelerate launch --config_file recipes/accelerate/zero2.yaml recipes/sft.py \
        --config recipes/configs/qwen2_5_vl_3b_full.yaml

is the same run as ``depthlm sft --config ... --accelerate_config recipes/accelerate/zero2.yaml``.
"""

from depthlm.recipes.sft import cli

if __name__ == "__main__":
    raise SystemExit(cli())
