"""nyuv2_focal: NYU Depth v2 RGB-D with focal stacks rendered under the HybridDepth protocol."""
