"""Field updates: the A/B boot state shared with U-Boot, RAUC's bootloader interface, the switch and health
rules. Pure: the files, RAUC and the reboot are reached through adapters and the `update` command."""
