"""mynabox.core."""
