//! `perfvm image build|list|remove`.

use super::{ImageCommand, ListFormat};
use crate::image::{self, recipe};
use crate::size::human;
use anyhow::Result;

pub fn run(cmd: ImageCommand) -> Result<i32> {
    let cache = crate::paths::cache_dir();
    match cmd {
        ImageCommand::Build { force } => {
            let loaded = recipe::load(&crate::paths::recipe_dir())?;
            let img = image::build::build(&cache, &loaded, force)?;
            println!("{}", img.id);
        }
        ImageCommand::List { format } => {
            let current = recipe::load(&crate::paths::recipe_dir()).ok().map(|r| r.id);
            let images = image::list(&cache)?;
            let saved = crate::saved::list(&cache)?;
            if format == ListFormat::Json {
                let rows: Vec<_> = images
                    .iter()
                    .map(|img| serde_json::json!({"id": img.id, "current_recipe": current.as_deref() == Some(img.id.as_str()), "dir": img.dir, "manifest": img.manifest()}))
                    .chain(saved.iter().map(|s| serde_json::json!({"id": s.id, "saved_guest": s})))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(0);
            }
            if images.is_empty() {
                println!("no images in {} (build one with `perfvm image build`)", crate::paths::images_dir(&cache).display());
            }
            for img in images {
                let m = img.manifest();
                println!(
                    "{}{}  {}  kernel {}  built {}",
                    img.id,
                    if current.as_deref() == Some(img.id.as_str()) { " (current recipe)" } else { "" },
                    m.as_ref().map(|m| human(m.disk_bytes)).unwrap_or_default(),
                    m.as_ref().map(|m| m.kernel_version.as_str()).unwrap_or("?"),
                    m.as_ref().map(|m| m.created.format("%Y-%m-%d %H:%M").to_string()).unwrap_or_default(),
                );
            }
            for st in saved {
                let key = st.key.as_ref();
                println!(
                    "{}  saved guest of {}, {} MiB, {} vCPU, {}  {} slot(s) built, {}",
                    st.id,
                    key.map(|k| k.image_id.as_str()).unwrap_or("?"),
                    key.map(|k| k.ram_mib).unwrap_or(0),
                    key.map(|k| k.cpus).unwrap_or(0),
                    key.map(|k| k.accel.as_str()).unwrap_or("?"),
                    st.slots_built,
                    human(st.bytes),
                );
            }
        }
        ImageCommand::Remove { id } if crate::saved::saved_dir(&cache).join(&id).is_dir() => {
            crate::saved::remove(&cache, &id).map_err(|e| crate::error::InputError(e.to_string()))?;
            println!("removed saved guest {id}");
        }
        ImageCommand::Remove { id } => {
            image::remove(&cache, &id).map_err(|e| crate::error::InputError(e.to_string()))?;
            println!("removed {id}");
        }
    }
    Ok(0)
}
