"""Fleet ops: provisioning one vehicle's identity onto a flashed card; the first boot taking it in."""
