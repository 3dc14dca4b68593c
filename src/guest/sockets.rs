//! Which sockets listen on a port, from /proc/net/tcp{,6}, and whether one of them belongs to
//! given processes (their socket inodes, from /proc/PID/fd). Pure; shared with
//! src/bin/perfvm-probe.rs, which runs it in the guest for the "something listens" health check:
//! qemu's forward accepts a connection whatever the guest does, and a socket of another process
//! on the port is not the target being up.

/// The inodes of the sockets in LISTEN state (0A) on `port` in a /proc/net/tcp{,6} table.
pub fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (local, state, inode) = (f.get(1)?, f.get(3)?, f.get(9)?);
            let p = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
            (*state == "0A" && p == port).then(|| inode.parse().ok())?
        })
        .collect()
}

/// The inode of a `/proc/PID/fd/N` link target that is a socket (`socket:[12345]`).
pub fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0 100 0 0 10 0\n   1: 0F02000A:1F90 0202000A:A1B2 01 00000000:00000000 00:00000000 00000000     0        0 777 1 0 100 0 0 10 0\n   2: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 99 1 0 100 0 0 10 0\n";

    #[test]
    fn listeners_are_found_by_port_and_state_with_their_inode() {
        assert_eq!(listening_inodes(TCP, 8080), vec![4242], "an established connection on 8080 is not a listener");
        assert_eq!(listening_inodes(TCP, 8081), vec![99]);
        assert!(listening_inodes(TCP, 80).is_empty());
        let tcp6 = "  sl  local_address remote_address st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000000000000000000000000000:1388 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5 1\n";
        assert_eq!(listening_inodes(tcp6, 5000), vec![5]);
        assert!(listening_inodes("", 5000).is_empty());
        assert!(listening_inodes("header\n garbage line\n", 5000).is_empty());
    }

    #[test]
    fn socket_links_give_their_inode() {
        assert_eq!(socket_inode("socket:[4242]"), Some(4242));
        assert_eq!(socket_inode("/dev/null"), None);
        assert_eq!(socket_inode("anon_inode:[eventpoll]"), None);
        assert_eq!(socket_inode("socket:[x]"), None);
    }
}
