"""Generation batches: synthetic chest X-rays from a LoRA-fine-tuned Stable Diffusion 2.1-base, run by Celery."""
