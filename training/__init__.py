"""LoRA fine-tuning and evaluation of the generator."""
