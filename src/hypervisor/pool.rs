//! Files on a remote host, through libvirt's storage API: a directory pool named `perfvm`, the
//! image's volumes uploaded once per host and keyed by image id, and per-cell volumes (overlay,
//! seed, console log) that go with the cell. No shared filesystem is assumed.

use super::VirtError;
use std::io::{Read, Write};
use std::path::Path;
use virt::connect::Connect;
use virt::storage_pool::StoragePool;
use virt::storage_vol::StorageVol;
use virt::stream::Stream;

pub const POOL_NAME: &str = "perfvm";

/// A cell's volumes are for root alone (the seed holds the cell's secret; libvirt hands them to
/// qemu's user when the guest starts); the image's are read by every cell.
fn mode_of(name: &str) -> &'static str {
    if name.starts_with(CELL_PREFIX) { "0600" } else { "0644" }
}

/// The volume XML of a plain file of `bytes` bytes (uploads: kernel, initrd, seed, base disk).
/// Allocation 0: libvirt would otherwise write the whole size before the upload does.
pub fn raw_volume_xml(name: &str, bytes: u64) -> String {
    format!(
        "<volume><name>{}</name><capacity unit='bytes'>{bytes}</capacity><allocation unit='bytes'>0</allocation><target><format type='raw'/><permissions><mode>{}</mode></permissions></target></volume>",
        super::domain_xml::escape(name),
        mode_of(name)
    )
}

/// The volume XML of a cell's qcow2 overlay on the base volume at `backing`.
pub fn overlay_volume_xml(name: &str, virtual_size: u64, backing: &str) -> String {
    format!(
        "<volume><name>{}</name><capacity unit='bytes'>{virtual_size}</capacity><target><format type='qcow2'/><permissions><mode>{}</mode></permissions></target><backingStore><path>{}</path><format type='qcow2'/></backingStore></volume>",
        super::domain_xml::escape(name),
        mode_of(name),
        super::domain_xml::escape(backing)
    )
}

const CELL_PREFIX: &str = "cell-";

/// A cell's volumes on a remote host (overlay, seed, console log), named with the owner id of
/// the perfvm that made them, so its leftovers are found without its domain.
pub fn cell_volumes(owner: &str, domain: &str) -> [String; 3] {
    let base = format!("{CELL_PREFIX}{owner}-{domain}");
    [format!("{base}.qcow2"), format!("{base}.seed.iso"), format!("{base}.console.log")]
}

/// The owner id in a cell volume's name (None for other volumes, and cells of an older perfvm).
pub fn volume_owner(name: &str) -> Option<&str> {
    let id = name.strip_prefix(CELL_PREFIX)?.get(..16)?;
    crate::owner::is_id(id).then_some(id)
}

/// The names of every volume in the pool.
pub fn volume_names(pool: &StoragePool) -> Result<Vec<String>, VirtError> {
    let _ = pool.refresh(0);
    Ok(pool.list_volumes()?)
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
            if let Err(e) = p.build(0) {
                let _ = p.undefine();
                return Err(e.into());
            }
            let _ = p.set_autostart(true);
            p
        }
    };
    if !pool.is_active()? {
        pool.create(0)?;
    }
    // Only needed for files made outside libvirt; it fails while another perfvm's upload runs.
    let _ = pool.refresh(0);
    Ok(pool)
}

/// The volume, None if the pool has none of that name. An error asking (a dead connection) is
/// an error, never "not there": teardown must not take it for "already removed".
pub fn lookup(pool: &StoragePool, name: &str) -> Result<Option<StorageVol>, VirtError> {
    match pool.lookup_storage_vol_by_name(name) {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.code() == virt::enumutil::Enum::Known(virt::error::ErrorNumber::NoStorageVolume) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// An empty volume (a marker, or a file qemu's log daemon fills).
pub fn create_empty(pool: &StoragePool, name: &str) -> Result<StorageVol, VirtError> {
    if let Some(old) = lookup(pool, name)? {
        old.delete(0)?;
    }
    Ok(StorageVol::create_xml(pool, &raw_volume_xml(name, 0), 0)?)
}

/// Upload a local file as a new volume (replacing one of the same name).
pub fn upload(conn: &Connect, pool: &StoragePool, name: &str, path: &Path) -> Result<StorageVol, VirtError> {
    let len = std::fs::metadata(path).map_err(|e| io(path, e))?.len();
    if let Some(old) = lookup(pool, name)? {
        old.delete(0)?;
    }
    let vol = StorageVol::create_xml(pool, &raw_volume_xml(name, len), 0)?;
    match send_file(conn, &vol, path, len) {
        Ok(()) => Ok(vol),
        Err(e) => {
            let _ = vol.delete(0);
            Err(e)
        }
    }
}

fn io(path: &Path, e: std::io::Error) -> VirtError {
    VirtError::Call(format!("{}: {e}", path.display()))
}

/// A stream that is not finished must be aborted, or the host keeps the volume busy.
fn finish_or_abort(stream: Stream, r: Result<(), VirtError>) -> Result<(), VirtError> {
    match r {
        Ok(()) => Ok(stream.finish()?),
        Err(e) => {
            let _ = stream.abort();
            Err(e)
        }
    }
}

fn send_file(conn: &Connect, vol: &StorageVol, path: &Path, len: u64) -> Result<(), VirtError> {
    let mut f = std::fs::File::open(path).map_err(|e| io(path, e))?;
    let stream = Stream::new(conn, 0)?;
    vol.upload(&stream, 0, len, 0)?;
    let pumped = (|| {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).map_err(|e| io(path, e))?;
            if n == 0 {
                return Ok(());
            }
            let mut off = 0;
            while off < n {
                match stream.send(&buf[off..n])? {
                    k if k > 0 => off += k as usize,
                    _ => return Err(VirtError::Call(format!("upload of {}: the stream took no bytes", path.display()))),
                }
            }
        }
    })();
    finish_or_abort(stream, pumped)
}

/// Download a volume to `dest`. A file libvirt did not create is found after a pool refresh.
pub fn download(conn: &Connect, pool: &StoragePool, name: &str, dest: &Path) -> Result<u64, VirtError> {
    let vol = match lookup(pool, name)? {
        Some(v) => v,
        None => {
            pool.refresh(0)?;
            pool.lookup_storage_vol_by_name(name)?
        }
    };
    let mut f = std::fs::File::create(dest).map_err(|e| io(dest, e))?;
    let stream = Stream::new(conn, 0)?;
    // Length 0: to the end of the file as it is now (the volume's recorded size may be older).
    vol.download(&stream, 0, 0, 0)?;
    let mut total = 0u64;
    let pumped = (|| {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = stream.recv(&mut buf)?;
            if n <= 0 {
                return Ok(());
            }
            f.write_all(&buf[..n as usize]).map_err(|e| io(dest, e))?;
            total += n as u64;
        }
    })();
    finish_or_abort(stream, pumped)?;
    Ok(total)
}

/// Delete a volume if it exists.
pub fn delete(pool: &StoragePool, name: &str) -> Result<(), VirtError> {
    match lookup(pool, name)? {
        Some(v) => Ok(v.delete(0)?),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_xml() {
        assert_eq!(cell_volumes("0123456789abcdef", "perfvm-x")[1], "cell-0123456789abcdef-perfvm-x.seed.iso");
        assert_eq!(volume_owner("cell-0123456789abcdef-perfvm-x.qcow2"), Some("0123456789abcdef"));
        assert_eq!(volume_owner("cell-perfvm-256-1M-r1-a1-abcd-4242.qcow2"), None, "an older perfvm's");
        assert_eq!(volume_owner("image-bookworm-1.qcow2"), None);
        assert!(raw_volume_xml("cell-0123456789abcdef-x.seed.iso", 1).contains("<mode>0600</mode>"));
        assert!(raw_volume_xml("image-x.qcow2", 1).contains("<mode>0644</mode>"));
        let x = overlay_volume_xml("cell-a.qcow2", 25769803776, "/p/img-<1>.qcow2");
        assert!(x.contains("<capacity unit='bytes'>25769803776</capacity>"));
        assert!(x.contains("<backingStore><path>/p/img-&lt;1&gt;.qcow2</path><format type='qcow2'/></backingStore>"));
        assert!(x.contains("<target><format type='qcow2'/>"));
        let r = raw_volume_xml("seed.iso", 1024);
        assert!(r.contains("<name>seed.iso</name>") && r.contains("<format type='raw'/>") && r.contains(">1024<"));
        assert!(r.contains("<allocation unit='bytes'>0</allocation>"));
        assert_eq!(pool_xml("/srv/p"), "<pool type='dir'><name>perfvm</name><target><path>/srv/p</path></target></pool>");
    }
}
