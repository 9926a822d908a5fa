"""ROS-free reference World Action Model: encoder, MoT backbone, flow matching, memory.

    config.py          ModelConfig / TrainConfig, presets `tiny` and `default`, YAML loading
    encoders.py        image encoder registry (efficientnet_lite0 frozen, conv), fixed pooling
    wam.py             WorldActionModel: MoT backbone, joint flow-matching losses, inference pieces
    ttt.py             Dual-State TTT memory (closed-form inner gradient)
    checkpoint.py      safetensors + YAML checkpoints (never pickle)
    train.py           `wam-ros train`: the training loop (tqdm, validation per head, resume, DDP)
    batches.py         a batch's tensors, action / object targets, normalised inputs
    stats.py           normalisation statistics (measured; coverage check for fine-tuning)
    ema.py             WeightEMA: exponential moving average of the weights
    train_state.py     the resumable optimizer state (train_state/, never pickle)
    export.py          `wam-ros export --format onnx|tensorrt`
    latent_decoder.py  Motus-style latent actions: autoencoder on random motions + decoder
    testing.py         tiny checkpoints and fake observations for tests
Modules are imported explicitly (torch is heavy); the runtime lives in wam_ros.runtime.
"""
