"""mobile_depth: real phone focal stacks without ground truth (qualitative evaluation)."""
