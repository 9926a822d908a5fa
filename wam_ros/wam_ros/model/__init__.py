"""ROS-free reference World Action Model: encoder, MoT backbone, flow matching, memory.

    config.py          ModelConfig / TrainConfig, presets `tiny` and `default`, YAML loading
    encoders.py        image encoder registry (efficientnet_lite0 frozen, conv), fixed pooling
    wam.py             WorldActionModel: MoT backbone, joint flow-matching losses, inference pieces
    ttt.py             Dual-State TTT memory (closed-form inner gradient)
    checkpoint.py      safetensors + YAML checkpoints (never pickle)
    train.py           `wam-ros train` (tqdm, validation per head, resume, DDP)
    export.py          `wam-ros export --format onnx|tensorrt`
    latent_decoder.py  Motus-style latent actions: autoencoder on random motions + decoder
    testing.py         tiny checkpoints and fake observations for tests
Modules are imported explicitly (torch is heavy); the runtime lives in wam_ros.runtime.
"""
