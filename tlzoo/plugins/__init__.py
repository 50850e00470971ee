"""tlzoo's built-in plugins; each registers through the same hooks a third party uses."""
