# Sourced by the engine benchmarks: `busybox_rootfs DIR TAR` lays out a busybox root
# filesystem in DIR (the host's /bin/busybox, a link per applet, root in passwd and
# group) and archives it as TAR, the image both skiff and its peers import.
busybox_rootfs() {
  local rf="$1" tar="$2"
  mkdir -p "$rf"/{bin,etc,tmp,proc,sys,dev}
  cp /bin/busybox "$rf/bin/busybox"
  for a in $("$rf/bin/busybox" --list); do [ "$a" = busybox ] || ln -sf busybox "$rf/bin/$a"; done
  echo 'root:x:0:0:root:/root:/bin/sh' > "$rf/etc/passwd"
  echo 'root:x:0:' > "$rf/etc/group"
  tar -C "$rf" -cf "$tar" .
}
