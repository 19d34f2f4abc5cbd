"""arkitscenes_focal: ARKitScenes upsampling frames with rendered 5-slice focal stacks (zero-shot test)."""
