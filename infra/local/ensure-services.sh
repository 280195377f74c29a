#!/usr/bin/env bash
# Make sure a MySQL-compatible server and Redis answer on loopback, as the code's defaults expect
# (MariaDB 127.0.0.1:3306 root/no password, Redis 127.0.0.1:6379). If one is missing, install it from
# Debian's packages and start it. Idempotent: does nothing when both already answer.
set -euo pipefail

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=""
apt_install() {
  [ -n "$apt_updated" ] || { as_root apt-get update -qq; apt_updated=1; }
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
wait_for() {
  for _ in $(seq 1 60); do answers "$1" && return 0; sleep 0.5; done
  echo "ensure-services: nothing answers on port $1 after 30 s" >&2; return 1
}

if ! answers 3306; then
  echo "ensure-services: MariaDB not answering on 3306; starting it"
  command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || apt_install mariadb-server
  as_root mkdir -p /run/mysqld && as_root chown mysql:mysql /run/mysqld 2>/dev/null || true
  as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
  wait_for 3306
fi
if command -v mariadb >/dev/null 2>&1 && ! mariadb -h 127.0.0.1 -P 3306 -u root -e 'SELECT 1' >/dev/null 2>&1; then
  # A fresh Debian install lets root in over the unix socket only; the project (and its docs) expect root
  # with no password over TCP on loopback, as on the machines this project runs on.
  echo "ensure-services: allowing root without a password over TCP on loopback"
  as_root mariadb -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('')"
fi

if ! answers 6379; then
  echo "ensure-services: Redis not answering on 6379; starting it"
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server
  as_root mkdir -p /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for 6379
fi

echo "ensure-services: MariaDB on 3306 and Redis on 6379 answer"
