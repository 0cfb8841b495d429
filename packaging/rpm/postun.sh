# nodereaper %postun: forget the removed unit; account and journal are kept.
if [ -d /run/systemd/system ]; then systemctl --system daemon-reload >/dev/null 2>&1 || :; fi
exit 0
