"""mynabox.commands."""
