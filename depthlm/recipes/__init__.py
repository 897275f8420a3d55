"""The training recipes, inside the package as TRL's ``trl/scripts`` and open-r1's ``src/open_r1``.

Each recipe module has the same Python API (stable; ``benchmarks/gpu_check.py``, the demo, the
notebook and the tests call it):

- ``make_parser(prog=None) -> trl.TrlParser`` over (data arguments, TRL config, model config);
- ``build_trainer(script_args, training_args, model_args) -> trainer``: the real trainer the
  recipe trains with (model, rendered dataset, callbacks, checkpoint loading), not yet trained;
- ``train(trainer) -> trainer``: resume if there is a checkpoint, train, save model, processor
  and render settings (:func:`depthlm.training.common.train_and_save`);
- ``main(script_args, training_args, model_args) -> trainer``: both;
- ``cli(argv=None) -> int``: parse YAML + flags and run (``depthlm sft``, ``recipes/sft.py``).

YAML configs stay in the repository's ``recipes/configs/``; ``recipes/sft.py`` and
``recipes/grpo.py`` are thin entry points so ``accelerate launch recipes/sft.py --config ...``
works as before.
"""
