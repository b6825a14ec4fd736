#!/bin/sh
# Real-time virtual audio devices for tests and CI, on machines without a sound card.
#
#   scripts/virtual-audio.sh start   start a private PulseAudio daemon (idempotent)
#   scripts/virtual-audio.sh stop    stop the daemon this script started (only that one)
#   scripts/virtual-audio.sh env     print the exports a process needs to use the devices
#   scripts/virtual-audio.sh status  exit 0 if the daemon is running and answering
#
# WZP_VIRTUAL_AUDIO_LOG_LEVEL=debug makes the daemon's log ($DIR/pulseaudio.log) verbose.
#
# The daemon has two null sinks, each a real-time clock:
#   virtmic      the virtual microphone: play audio into it; its monitor "virtmic.monitor"
#                is the default source, so anything capturing from the default device hears it
#   virtspeaker  the virtual speaker: the default sink; record "virtspeaker.monitor" to hear
#                what a program played
# and an ALSA configuration (default, virtmic and virtspeaker PCMs, all PulseAudio) so
# PortAudio's ALSA host API, which naudiodon uses, reaches them.
#
# Everything lives in one private directory: $WZP_VIRTUAL_AUDIO_DIR, default
# /tmp/wzp-virtual-audio-$(id -u). The daemon gets its own HOME and XDG_RUNTIME_DIR there
# (PulseAudio run as root needs both), needs no D-Bus, and leaves the user's own PulseAudio and
# ~/.asoundrc alone. Typical use:
#
#   scripts/virtual-audio.sh start && eval "$(scripts/virtual-audio.sh env)"
set -eu

DIR=${WZP_VIRTUAL_AUDIO_DIR:-/tmp/wzp-virtual-audio-$(id -u)}
RUNTIME_DIR=$DIR/runtime
SOCKET=$RUNTIME_DIR/pulse/native
PID_FILE=$RUNTIME_DIR/pulse/pid
ASOUND_CONF=$DIR/asound.conf
CLIENT_CONF=$DIR/client.conf
SCRIPT_FILE=$DIR/default.pa
LOG_FILE=$DIR/pulseaudio.log
SAMPLE_RATE=48000
ANCHOR_LATENCY_MS=60
START_TIMEOUT_TENTHS=50
STOP_TIMEOUT_TENTHS=30

die() {
  echo "virtual-audio: $*" >&2
  exit 1
}

client_env() {
  # What a client process needs. PULSE_LATENCY_MSEC is not set: latency is each stream's own
  # choice (naudiodon asks for low latency through PortAudio's ALSA period size).
  cat <<EOF
export PULSE_SERVER='unix:$SOCKET'
export PULSE_CLIENTCONFIG='$CLIENT_CONF'
export PULSE_COOKIE='$DIR/cookie'
export ALSA_CONFIG_PATH='$ASOUND_CONF'
export WZP_VIRTUAL_AUDIO_DIR='$DIR'
EOF
}

# A live (not zombie) pulseaudio process with this pid.
is_pulseaudio() {
  [ "$(cat "/proc/$1/comm" 2>/dev/null)" = pulseaudio ] &&
    [ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" != Z ]
}

daemon_pid() {
  [ -f "$PID_FILE" ] || return 1
  pid=$(tr -dc '0-9' <"$PID_FILE")
  [ -n "$pid" ] && is_pulseaudio "$pid" || return 1
  echo "$pid"
}

answering() {
  PULSE_SERVER="unix:$SOCKET" PULSE_CLIENTCONFIG="$CLIENT_CONF" PULSE_COOKIE="$DIR/cookie" \
    pactl info >/dev/null 2>&1
}

running() {
  daemon_pid >/dev/null && answering
}

write_config() {
  mkdir -p "$DIR/home" "$RUNTIME_DIR"
  chmod 700 "$DIR" "$RUNTIME_DIR"
  cat >"$SCRIPT_FILE" <<EOF
# Loaded with -n: no hardware detection, no D-Bus, no X11, only what the tests need.
load-module module-native-protocol-unix socket=$SOCKET auth-anonymous=1
load-module module-null-sink sink_name=virtmic rate=$SAMPLE_RATE channels=1 format=s16le sink_properties=device.description=wzp-virtual-mic
load-module module-null-sink sink_name=virtspeaker rate=$SAMPLE_RATE channels=1 format=s16le sink_properties=device.description=wzp-virtual-speaker
set-default-source virtmic.monitor
set-default-sink virtspeaker
# Keep both null sinks rendering in small blocks. An idle null sink renders 2 s ahead and sleeps
# 2 s; a capture stream that connects then gets its first audio only when the sink next wakes
# (up to 2 s later; always 2 s with module-suspend-on-idle, which is why that is not loaded).
# A low-latency loopback from each monitor into a throwaway sink keeps the block at ~20 ms.
load-module module-null-sink sink_name=latency_anchor rate=$SAMPLE_RATE channels=1 format=s16le sink_properties=device.description=wzp-latency-anchor
load-module module-loopback source=virtmic.monitor sink=latency_anchor latency_msec=$ANCHOR_LATENCY_MS source_dont_move=true sink_dont_move=true
load-module module-loopback source=virtspeaker.monitor sink=latency_anchor latency_msec=$ANCHOR_LATENCY_MS source_dont_move=true sink_dont_move=true
# The sinks rendered 2 s ahead before the loopbacks existed: restart their clocks.
suspend-sink virtmic 1
suspend-sink virtmic 0
suspend-sink virtspeaker 1
suspend-sink virtspeaker 0
suspend-sink latency_anchor 1
suspend-sink latency_anchor 0
EOF
  cat >"$CLIENT_CONF" <<EOF
autospawn = no
EOF
  cat >"$ASOUND_CONF" <<EOF
# The whole ALSA configuration of processes using these devices (ALSA_CONFIG_PATH replaces the
# system alsa.conf): no hardware PCMs to probe, so PortAudio starts faster, lists exactly these
# devices and prints no errors about missing cards. All of them go to the private PulseAudio
# daemon named by PULSE_SERVER.
pcm.!default { type pulse hint { show on description "default: virtmic.monitor / virtspeaker" } }
ctl.!default { type pulse }
# Playing into "virtmic" feeds the virtual microphone; capturing from it records what was fed.
pcm.virtmic {
  type asym
  playback.pcm { type pulse device virtmic }
  capture.pcm { type pulse device virtmic.monitor }
  hint { show on description "wzp virtual microphone" }
}
# Playing into "virtspeaker" is what a program's speaker output does; capturing records it.
pcm.virtspeaker {
  type asym
  playback.pcm { type pulse device virtspeaker }
  capture.pcm { type pulse device virtspeaker.monitor }
  hint { show on description "wzp virtual speaker" }
}
EOF
}

start() {
  command -v pulseaudio >/dev/null || die "pulseaudio is not installed (Debian: apt-get install pulseaudio pulseaudio-utils libasound2-plugins)"
  if running; then
    echo "virtual-audio: already running (pid $(daemon_pid), $DIR)" >&2
    return 0
  fi
  write_config
  rm -f "$SOCKET" "$PID_FILE"
  # Realtime scheduling matters on a busy CI machine: at normal priority the sink threads were
  # measured stalling for up to 0.5 s under CPU contention, and captured audio then arrives in
  # bursts. It is granted to root (or with RLIMIT_RTPRIO); otherwise PulseAudio just warns.
  HOME=$DIR/home XDG_RUNTIME_DIR=$RUNTIME_DIR PULSE_CLIENTCONFIG=$CLIENT_CONF \
    pulseaudio -n --file="$SCRIPT_FILE" --daemonize=yes --system=false --use-pid-file=yes \
    --exit-idle-time=-1 --high-priority=yes --realtime=yes --disallow-exit=no \
    --log-target="file:$LOG_FILE" --log-level="${WZP_VIRTUAL_AUDIO_LOG_LEVEL:-notice}" \
    || die "pulseaudio failed to start; see $LOG_FILE"
  tries=0
  until running; do
    tries=$((tries + 1))
    [ "$tries" -le "$START_TIMEOUT_TENTHS" ] || die "pulseaudio did not answer within 5 s; see $LOG_FILE"
    sleep 0.1
  done
  echo "virtual-audio: started (pid $(daemon_pid), $DIR)" >&2
}

stop() {
  if ! pid=$(daemon_pid); then
    echo "virtual-audio: not running ($DIR)" >&2
    return 0
  fi
  kill -TERM "$pid"
  tries=0
  while is_pulseaudio "$pid" && [ "$tries" -lt "$STOP_TIMEOUT_TENTHS" ]; do
    tries=$((tries + 1))
    sleep 0.1
  done
  ! is_pulseaudio "$pid" || kill -KILL "$pid"
  rm -f "$PID_FILE" "$SOCKET"
  echo "virtual-audio: stopped (pid $pid)" >&2
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) client_env ;;
  status) running ;;
  *)
    echo "usage: $0 start|stop|env|status" >&2
    exit 2
    ;;
esac
