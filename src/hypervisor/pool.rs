//! Files on a remote host, through libvirt's storage API: a directory pool named `perfvm`, the
//! image's volumes uploaded once per host and keyed by image id, and per-cell volumes (overlay,
//! seed, console log) that go with the cell. No shared filesystem is assumed.

use super::conn::VirtError;
use std::io::{Read, Write};
use std::path::Path;
use virt::connect::Connect;
use virt::storage_pool::StoragePool;
use virt::storage_vol::StorageVol;
use virt::stream::Stream;

pub const POOL_NAME: &str = "perfvm";

/// The volume XML of a plain file of `bytes` bytes (uploads: kernel, initrd, seed, base disk).
pub fn raw_volume_xml(name: &str, bytes: u64) -> String {
    format!(
        "<volume><name>{}</name><capacity unit='bytes'>{bytes}</capacity><target><format type='raw'/><permissions><mode>0644</mode></permissions></target></volume>",
        super::domain_xml::escape(name)
    )
}

/// The volume XML of a cell's qcow2 overlay on the base volume at `backing`.
pub fn overlay_volume_xml(name: &str, virtual_size: u64, backing: &str) -> String {
    format!(
        "<volume><name>{}</name><capacity unit='bytes'>{virtual_size}</capacity><target><format type='qcow2'/><permissions><mode>0644</mode></permissions></target><backingStore><path>{}</path><format type='qcow2'/></backingStore></volume>",
        super::domain_xml::escape(name),
        super::domain_xml::escape(backing)
    )
}

/// A cell's volumes on a remote host: overlay, seed, console log.
pub fn cell_volumes(domain: &str) -> [String; 3] {
    [format!("cell-{domain}.qcow2"), format!("cell-{domain}.seed.iso"), format!("cell-{domain}.console.log")]
}

pub fn pool_xml(path: &str) -> String {
    format!("<pool type='dir'><name>{POOL_NAME}</name><target><path>{}</path></target></pool>", super::domain_xml::escape(path))
}

/// The `perfvm` pool, defined, built and started if it is not yet.
pub fn ensure_pool(conn: &Connect, path: &str) -> Result<StoragePool, VirtError> {
    let pool = match conn.lookup_storage_pool_by_name(POOL_NAME) {
        Ok(p) => p,
        Err(_) => {
            let p = conn.define_storage_pool_xml(&pool_xml(path), 0)?;
            p.build(0)?;
            let _ = p.set_autostart(true);
            p
        }
    };
    if !pool.is_active()? {
        pool.create(0)?;
    }
    pool.refresh(0)?;
    Ok(pool)
}

pub fn lookup(pool: &StoragePool, name: &str) -> Option<StorageVol> {
    pool.lookup_storage_vol_by_name(name).ok()
}

/// Upload a local file as a new volume (replacing one of the same name).
pub fn upload(conn: &Connect, pool: &StoragePool, name: &str, path: &Path) -> Result<StorageVol, VirtError> {
    let call = |e: std::io::Error| VirtError::Call(format!("{}: {e}", path.display()));
    let len = std::fs::metadata(path).map_err(call)?.len();
    if let Some(old) = lookup(pool, name) {
        old.delete(0)?;
    }
    let vol = StorageVol::create_xml(pool, &raw_volume_xml(name, len), 0)?;
    let sent = (|| {
        let stream = Stream::new(conn, 0)?;
        vol.upload(&stream, 0, len, 0)?;
        let mut f = std::fs::File::open(path).map_err(call)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).map_err(call)?;
            if n == 0 {
                break;
            }
            let mut off = 0;
            while off < n {
                match stream.send(&buf[off..n]) {
                    Ok(k) if k > 0 => off += k as usize,
                    Ok(_) => return Err(VirtError::Call(format!("upload of {name}: the stream took no bytes"))),
                    Err(e) => {
                        let _ = stream.abort();
                        return Err(e.into());
                    }
                }
            }
        }
        stream.finish()?;
        Ok(())
    })();
    if let Err(e) = sent {
        let _ = vol.delete(0);
        return Err(e);
    }
    Ok(vol)
}

/// Download a volume (a file libvirt did not create is found after a pool refresh) to `dest`.
pub fn download(conn: &Connect, pool: &StoragePool, name: &str, dest: &Path) -> Result<u64, VirtError> {
    pool.refresh(0)?;
    let vol = pool.lookup_storage_vol_by_name(name)?;
    let stream = Stream::new(conn, 0)?;
    vol.download(&stream, 0, 0, 0)?;
    let mut f = std::fs::File::create(dest).map_err(|e| VirtError::Call(format!("{}: {e}", dest.display())))?;
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = stream.recv(&mut buf)?;
        if n <= 0 {
            break;
        }
        f.write_all(&buf[..n as usize]).map_err(|e| VirtError::Call(format!("{}: {e}", dest.display())))?;
        total += n as u64;
    }
    stream.finish()?;
    Ok(total)
}

/// Delete a volume if it exists (after a refresh, for files qemu or virtlogd made).
pub fn delete(pool: &StoragePool, name: &str) -> Result<(), VirtError> {
    let _ = pool.refresh(0);
    match lookup(pool, name) {
        Some(v) => Ok(v.delete(0)?),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_xml() {
        let x = overlay_volume_xml("cell-a.qcow2", 25769803776, "/p/img-<1>.qcow2");
        assert!(x.contains("<capacity unit='bytes'>25769803776</capacity>"));
        assert!(x.contains("<backingStore><path>/p/img-&lt;1&gt;.qcow2</path><format type='qcow2'/></backingStore>"));
        assert!(x.contains("<target><format type='qcow2'/>"));
        let r = raw_volume_xml("seed.iso", 1024);
        assert!(r.contains("<name>seed.iso</name>") && r.contains("<format type='raw'/>") && r.contains(">1024<"));
        assert_eq!(pool_xml("/srv/p"), "<pool type='dir'><name>perfvm</name><target><path>/srv/p</path></target></pool>");
    }
}
