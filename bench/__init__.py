"""Speed measurements of the project's training paths, as ratios against a plain baseline run beside them."""
