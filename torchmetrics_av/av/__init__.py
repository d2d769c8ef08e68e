"""Audio-video metrics: ImageBind score and Synchformer DeSync."""
