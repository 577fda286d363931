//! The BSP's modules and firmware squashfs images of bsp/run.json, loop-mounted read-only at
//! `<PV_DISK_VOLDIR>/bsp/modules` and `<PV_DISK_VOLDIR>/bsp/firmware` for the running revision.
//! On a device (embedded mode) they are also bound at `/lib/modules` and `/lib/firmware`, where
//! module loading and the containers' automodfw binds look; a standalone test never touches the
//! host's /lib. device.json `volumes` are mounted at `<PV_DISK_VOLDIR>/bsp/<name>` as a
//! container's storage volumes are, and upstream's creds work dir `<rundir>/phconfig` is bound
//! last; all go with the BSP at the end.
use super::volumes::{self, Mounted};
use super::{ms, Engine, Error};
use crate::pvlog;
use crate::state::{Bsp, ImageRef, State};
use crate::storage::{fs::RealFs, Storage};
use std::path::{Path, PathBuf};

/// The BSP volume that holds the Hub credentials when `PV_STORAGE_PHCONFIG_VOL=1` (pv:`paths.h`).
pub const PHCONFIG_VOLUME: &str = "pv--phconfig";
/// The BSP volumes that hold the user-meta and device-meta stores when declared (pv:`paths.h`).
pub const USRMETA_VOLUME: &str = "pv--usrmeta";
pub const DEVMETA_VOLUME: &str = "pv--devmeta";

/// Where the credentials live (reference 1.1, 2.6): the BSP volume `pv--phconfig` when
/// `from_volume`, else `<storage>/config`.
pub fn phconfig_source(storage: &Path, voldir: &Path, from_volume: bool) -> PathBuf {
    if from_volume {
        voldir.join("bsp").join(PHCONFIG_VOLUME)
    } else {
        storage.join("config")
    }
}

/// What is mounted for the BSP; give it back to [`Engine::unmount_bsp`].
#[derive(Debug, Default)]
pub struct BspVolumes {
    mounted: Vec<Mounted>,
    /// `<modules mount>/<release>` when the modules image is mounted.
    pub modules_root: Option<PathBuf>,
    pub firmware_root: Option<PathBuf>,
}

/// Loop-mounts a BSP squashfs; a `dm:` one through dm-verity when `verity`, with its
/// `bsp/_dm/<image>.json` (else plain, as upstream with its handlers off).
fn mount_image(
    trail: &Path,
    bsp: &Bsp,
    image: &ImageRef,
    target: &Path,
    (legacy, verity): (bool, bool),
    done: &mut Vec<Mounted>,
) -> Result<(), Error> {
    let dir = trail.join("bsp");
    let source = dir.join(&image.path);
    match image.handler.as_deref() {
        None | Some("dm") => {}
        Some(h) => {
            return Err(Error::invalid(
                "bsp",
                "volume",
                &source,
                format!("handler {h}: is not supported"),
            ))
        }
    }
    std::fs::create_dir_all(target).map_err(|e| Error::io("bsp", "mkdir", target, &e))?;
    if image.handler.is_some() && verity {
        let m = bsp
            .dm_manifests
            .iter()
            .find(|m| m.volume == image.path)
            .ok_or_else(|| {
                Error::invalid(
                    "bsp",
                    "dm-verity",
                    &source,
                    format!("no bsp/_dm/{}.json", image.path),
                )
            })?;
        let v = volumes::mount_verity("bsp", &dir, &image.path, m, "squashfs", target, legacy)?;
        done.push(v);
        return Ok(());
    }
    let dev =
        volumes::loop_attach(&source, legacy).map_err(|e| Error::io("bsp", "loop", &source, &e))?;
    if let Err(e) = volumes::mount_path(Some(&dev.path), target, Some("squashfs"), ms::RDONLY) {
        dev.detach();
        return Err(Error::io("bsp", "mount", target, &e));
    }
    done.push(Mounted {
        target: target.to_path_buf(),
        loop_dev: Some(dev),
        dm: None,
    });
    Ok(())
}

fn bind(source: &Path, target: &Path, done: &mut Vec<Mounted>) -> Result<(), Error> {
    std::fs::create_dir_all(target).map_err(|e| Error::io("bsp", "mkdir", target, &e))?;
    volumes::mount_path(Some(source), target, None, ms::BIND)
        .map_err(|e| Error::io("bsp", "mount", target, &e))?;
    done.push(Mounted {
        target: target.to_path_buf(),
        loop_dev: None,
        dm: None,
    });
    Ok(())
}

impl Engine {
    /// Mounts the modules image for kernel `release` (`modules_<release>` wins over `modules`)
    /// and the firmware image of revision `rev`. `on_device`: also bind them at /lib/modules and
    /// /lib/firmware. On error nothing stays mounted.
    pub fn mount_bsp(
        &mut self,
        rev: &str,
        state: &State,
        release: &str,
        on_device: bool,
    ) -> Result<BspVolumes, Error> {
        let mut v = BspVolumes::default();
        let Some(bsp) = state.bsp() else { return Ok(v) };
        let trail = self.paths().storage.join("trails").join(rev);
        let base = self.paths().voldir.join("bsp");
        let how = (self.options().legacy_kernel, self.options().verity);
        let r = (|| {
            if let Some(img) = bsp.modules_for(release) {
                let target = base.join("modules");
                mount_image(&trail, bsp, img, &target, how, &mut v.mounted)?;
                if on_device {
                    bind(&target, Path::new("/lib/modules"), &mut v.mounted)?;
                }
                v.modules_root = Some(target.join(release));
            }
            if let Some(img) = &bsp.firmware {
                let target = base.join("firmware");
                mount_image(&trail, bsp, img, &target, how, &mut v.mounted)?;
                if on_device {
                    bind(&target, Path::new("/lib/firmware"), &mut v.mounted)?;
                }
                v.firmware_root = Some(target);
            }
            Ok(())
        })();
        if let Err(e) = r {
            volumes::unmount_all("bsp", std::mem::take(&mut v.mounted));
            return Err(e);
        }
        pvlog!(
            Info,
            "container",
            "bsp: {} volumes mounted",
            v.mounted.len()
        );
        Ok(v)
    }

    /// device.json `volumes` (reference 2.6, 2.7) at `<voldir>/bsp/<name>`, each as a
    /// container's storage volume. One that cannot be mounted (a `disk` one: issue 13) is
    /// logged, naming it, and the others are mounted all the same.
    pub fn mount_bsp_volumes(&mut self, rev: &str, state: &State, v: &mut BspVolumes) {
        let paths = self.paths().clone();
        let st = Storage::new(&RealFs, &paths.storage);
        for s in state.volumes() {
            match volumes::mount_storage(&paths, &st, rev, state, "bsp", s) {
                Ok(m) => v.mounted.push(m),
                Err(e) => pvlog!(Error, "container", "{e}"),
            }
        }
    }

    /// Upstream's creds work dir: `<rundir>/phconfig` bound to [`phconfig_source`], after the
    /// BSP volumes (the source may be one). A missing source is upstream's error and nothing
    /// is bound: the Hub client then has no credentials, the device goes on.
    pub fn mount_phconfig(
        &mut self,
        from_volume: bool,
        v: &mut BspVolumes,
    ) -> Result<PathBuf, Error> {
        let p = self.paths();
        let source = phconfig_source(&p.storage, &p.voldir, from_volume);
        let target = p.rundir.join("phconfig");
        // an empty mount point left behind would read as a credentials dir to the Hub client
        let r = if source.is_dir() {
            bind(&source, &target, &mut v.mounted)
        } else {
            Err(Error::invalid(
                "bsp",
                "creds",
                &source,
                "does not exist but required by config",
            ))
        };
        if r.is_err() {
            let _ = std::fs::remove_dir(&target);
        }
        r.map(|()| target)
    }

    /// Upstream's special device.json volumes `pv--usrmeta` and `pv--devmeta` hold the
    /// user-meta and device-meta stores (pv:`metadata.c`): each mounted one is bound over its
    /// store's folder (`stores`, in that order), so every reader and writer of the store uses
    /// the volume (on a crypt disk: encrypted). One declared but not mounted gets an empty
    /// tmpfs there instead: its data is meant for that volume, never for the plain storage.
    /// Returns whether the user-meta store moved.
    pub fn mount_meta_volumes(
        &mut self,
        state: &State,
        stores: [&Path; 2],
        v: &mut BspVolumes,
    ) -> bool {
        let voldir = self.paths().voldir.join("bsp");
        let mut user = false;
        for (vol, store) in [USRMETA_VOLUME, DEVMETA_VOLUME].into_iter().zip(stores) {
            if !state.volumes().iter().any(|s| s.name == vol) {
                continue;
            }
            let source = voldir.join(vol);
            let r = if v.mounted.iter().any(|m| m.target == source) {
                bind(&source, store, &mut v.mounted)
            } else {
                pvlog!(
                    Error,
                    "container",
                    "bsp: volume {vol} is not mounted: {} is an empty tmpfs this boot",
                    store.display()
                );
                std::fs::create_dir_all(store)
                    .and_then(|()| volumes::mount_tmpfs(store))
                    .map_err(|e| Error::io("bsp", "mount", store, &e))
                    .map(|()| {
                        v.mounted.push(Mounted {
                            target: store.to_path_buf(),
                            loop_dev: None,
                            dm: None,
                        })
                    })
            };
            match r {
                Ok(()) => user |= vol == USRMETA_VOLUME,
                Err(e) => pvlog!(Error, "container", "{e}"),
            }
        }
        user
    }

    /// Unmounts what [`Engine::mount_bsp`] and the calls after it mounted, then the crypt
    /// disks (what was bound from them is gone by now: containers stop first).
    pub fn unmount_bsp(&mut self, v: BspVolumes) {
        volumes::unmount_all("bsp", v.mounted);
        super::disk::close_all(&self.paths().media);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_creds_come_from_storage_config_or_the_pv_phconfig_volume() {
        let (st, vol) = (Path::new("/storage"), Path::new("/volumes"));
        assert_eq!(
            phconfig_source(st, vol, false),
            Path::new("/storage/config")
        );
        assert_eq!(
            phconfig_source(st, vol, true),
            Path::new("/volumes/bsp/pv--phconfig")
        );
    }
}
