"""When blocks seal and roots are anchored (``sealer``), and the on-chain thresholds that seal an
abnormal reading at once (``policy``)."""
