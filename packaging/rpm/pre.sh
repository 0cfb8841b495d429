# nodereaper %pre: the service account (before the files, so the
# configuration file can be installed with group nodereaper).
getent group nodereaper >/dev/null || groupadd --system nodereaper
getent passwd nodereaper >/dev/null || useradd --system --gid nodereaper \
    --home-dir /var/lib/nodereaper --no-create-home --shell /sbin/nologin \
    --comment "nodereaper daemon" nodereaper
exit 0
