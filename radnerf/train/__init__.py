"""Training: losses, the EMA of weights, checkpoints, and the training stages.

- :mod:`radnerf.train.head`: stage ``train-head`` (:func:`train_head`), :class:`HeadTrainer`, :func:`load_head`;
- :mod:`radnerf.train.torso`: stage ``train-torso`` (:func:`train_torso`), :class:`TorsoTrainer`, :func:`load_torso`,
  :func:`render_frame` (head over torso over background);
- :mod:`radnerf.train.loop`: what the stages share: :class:`TrainingRun` (steps, checkpoints, resuming,
  validation, export), the speed meter, the log;
- :mod:`radnerf.train.losses`: the paper's Eqs. 4-6 and PSNR;
- :mod:`radnerf.train.checkpoint`: atomic writes, safe reads, the settings that differ;
- :mod:`radnerf.train.ema`: exponential moving average of the weights.
"""
