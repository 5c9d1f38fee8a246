"""mynabox.summary."""
