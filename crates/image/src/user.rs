//! Resolving `USER` strings (`name`, `uid`, `name:group`, `uid:gid`) against the
//! `/etc/passwd` and `/etc/group` of an image's layers, as docker does for containers.

use crate::error::{ImageError, Result};
use crate::layer::MergedView;
use std::path::{Path, PathBuf};

/// A resolved user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserIds {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups: the groups of `/etc/group` that list the user by name.
    pub additional_gids: Vec<u32>,
    /// The home directory from `/etc/passwd` (`/` if unknown).
    pub home: String,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

fn passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                home: f.get(5).unwrap_or(&"/").to_string(),
            })
        })
        .collect()
}

/// (name, gid, members)
fn groups(text: &str) -> Vec<(String, u32, Vec<String>)> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let members = f
                .get(3)
                .map(|m| {
                    m.split(',')
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            Some((f.first()?.to_string(), f.get(2)?.parse().ok()?, members))
        })
        .collect()
}

/// Resolves `user` (`USER` syntax; empty means root) in the merged view of `layer_dirs`
/// (bottom first, as [`crate::ImageStore::layer_dirs`] returns them).
pub fn lookup_user(layer_dirs: &[PathBuf], user: &str) -> Result<UserIds> {
    let view = MergedView::new(layer_dirs);
    let read = |p: &str| {
        view.read_file(Path::new(p))
            .map(|b| String::from_utf8_lossy(&b).to_string())
            .unwrap_or_default()
    };
    resolve(&read("etc/passwd"), &read("etc/group"), user)
}

/// Like [`lookup_user`], against a mounted root file system.
pub fn lookup_user_in_rootfs(rootfs: &Path, user: &str) -> Result<UserIds> {
    let read = |p: &str| std::fs::read_to_string(rootfs.join(p)).unwrap_or_default();
    resolve(&read("etc/passwd"), &read("etc/group"), user)
}

fn resolve(passwd_text: &str, group_text: &str, user: &str) -> Result<UserIds> {
    let users = passwd(passwd_text);
    let groups = groups(group_text);
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let u = if u.is_empty() { "0" } else { u };
    let entry = match u.parse::<u32>() {
        Ok(uid) => users.iter().find(|e| e.uid == uid),
        Err(_) => Some(users.iter().find(|e| e.name == u).ok_or_else(|| {
            ImageError::Invalid(format!(
                "unable to find user {u}: no matching entries in passwd file"
            ))
        })?),
    };
    let uid = match u.parse::<u32>() {
        Ok(n) => n,
        Err(_) => entry.map(|e| e.uid).unwrap_or(0),
    };
    let gid = match g {
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => groups
                .iter()
                .find(|(n, _, _)| n == g)
                .map(|(_, id, _)| *id)
                .ok_or_else(|| {
                    ImageError::Invalid(format!(
                        "unable to find group {g}: no matching entries in group file"
                    ))
                })?,
        },
        None => entry.map(|e| e.gid).unwrap_or(0),
    };
    let additional_gids = match (g, entry) {
        (None, Some(e)) => groups
            .iter()
            .filter(|(_, id, members)| *id != gid && members.contains(&e.name))
            .map(|(_, id, _)| *id)
            .collect(),
        _ => Vec::new(),
    };
    Ok(UserIds {
        uid,
        gid,
        additional_gids,
        home: entry.map(|e| e.home.clone()).unwrap_or_else(|| "/".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_like_docker() {
        let p = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:app:/home/app:/bin/sh\n";
        let g = "root:x:0:\napps:x:1001:\nextra:x:2000:app,other\n";
        let r = |u: &str| resolve(p, g, u);
        assert_eq!(r("").unwrap().uid, 0);
        let app = r("app").unwrap();
        assert_eq!(
            (app.uid, app.gid, app.additional_gids.clone()),
            (1000, 1001, vec![2000])
        );
        assert_eq!(app.home, "/home/app");
        assert_eq!((r("1000").unwrap().gid), 1001);
        assert_eq!((r("42").unwrap().uid, r("42").unwrap().gid), (42, 0));
        assert_eq!(r("app:extra").unwrap().gid, 2000);
        assert_eq!(r("5:6").unwrap().gid, 6);
        assert!(r("nobody")
            .unwrap_err()
            .to_string()
            .contains("unable to find user nobody"));
        assert!(r("app:nogroup").is_err());
    }

    #[test]
    fn looks_up_through_layers() {
        let (_t, s, img) = crate::store::tests::store_with_busybox();
        let u = lookup_user(&s.layer_dirs(&img), "app").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1001));
    }
}
