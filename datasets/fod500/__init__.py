"""fod500: the DefocusNet synthetic focal stacks ("fs_6"), 400 train / 100 test scenes."""
