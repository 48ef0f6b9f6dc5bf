"""Fine-tuning: narrow LoRA or full fine-tunes that save checkpoints along the trajectory (issue: finetune)."""
