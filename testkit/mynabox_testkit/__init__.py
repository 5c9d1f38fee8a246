"""mynabox_testkit."""
