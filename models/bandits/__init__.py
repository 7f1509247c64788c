"""Traffic allocation among creatives (Thompson sampling, LinUCB) and off-policy evaluation."""
