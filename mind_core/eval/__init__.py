"""Evaluations of what the KB is good for. ``intentionqa``: the IntentionQA multiple-choice benchmark."""
