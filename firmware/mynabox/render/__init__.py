"""mynabox.render."""
