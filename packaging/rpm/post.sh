# nodereaper %post: the journal directory, private to the service and never
# removed by the package. The service is not enabled or started.
install -d -m 0755 -o root -g root /var/lib/nodereaper
install -d -m 0700 -o nodereaper -g nodereaper /var/lib/nodereaper/journal
if [ -d /run/systemd/system ]; then systemctl --system daemon-reload >/dev/null 2>&1 || :; fi
exit 0
