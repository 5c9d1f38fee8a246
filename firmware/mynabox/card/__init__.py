"""mynabox.card."""
