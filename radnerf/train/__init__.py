"""Training: losses, the EMA of weights, checkpoints, and the training stages.

- :mod:`radnerf.train.head`: stage ``train-head`` (:func:`train_head`), :class:`HeadTrainer`, :func:`load_head`;
- :mod:`radnerf.train.losses`: the paper's Eqs. 4-6 and PSNR;
- :mod:`radnerf.train.checkpoint`: atomic writes, safe reads, the settings that differ;
- :mod:`radnerf.train.ema`: exponential moving average of the weights.
"""
