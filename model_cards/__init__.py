"""Model card templates, shipped inside the package as `multimodal_gpt.model_cards` (see pyproject.toml) and
rendered by `multimodal_gpt.training.model_card`."""
