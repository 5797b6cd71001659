# Sourced by bench/smpp.sh and bench/smpp_ab.sh, so both run tsunagi the same way.
# smpp_config SMSC-PORT BINDS WINDOW: tsunagi's config for the SMPP load on stdout (provider smpp,
# rates lifted, a permit for every window slot and a quarter more).
smpp_config() {
  cat <<TOML
[delivery]
provider = "smpp"
rate_per_second = 100000
concurrency = $(($2 * $3 + $2 * $3 / 4))

[providers.smpp]
host = "127.0.0.1"
port = $1
system_id = "bench"
password = "bench123"
source_addr = "TSUNAGI"
binds = $2
window = $3
rate_per_second = 100000
TOML
}
