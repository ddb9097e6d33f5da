//! MS-SRVS through `net rpc file`: NetFileEnum (the 32-bit file ids) and NetFileClose.
//!
//! Samba's srvsvc file id is `(pid << 16) | share_file_id`, cut to 32 bits. It is the only id
//! NetFileClose takes, and smbstatus's text form does not print it, so every listing also
//! enumerates. `net rpc` dials port 445 only (it ignores `-p`), so smbd must listen there.

/// One NetFileEnum (level 3) entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// The srvsvc file id.
    pub fid: u32,
    /// Who opened it (the unix user name).
    pub user: String,
    /// `C:` + service path + `/` + name, with `/` turned into `\` (the share root is just
    /// `C:` + service path).
    pub path: String,
}

/// Parses `net rpc file` output:
///
/// ```text
/// Enumerating open files on remote server:
///
/// FileId  Opened by            Perms  Locks  Path
/// ------  ---------            -----  -----  ----
/// 698155016 labu                 0x03   0      C:\srv\data\held\f00000.txt
/// ```
pub fn parse_enum(text: &str) -> (Vec<FileEntry>, Vec<super::locks::BadLine>) {
    let mut entries = Vec::new();
    let mut bad = Vec::new();
    let mut in_table = false;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if !in_table {
            in_table = trimmed.starts_with("------");
            continue;
        }
        if trimmed.is_empty() {
            continue;
        }
        match parse_entry(line) {
            Ok(e) => entries.push(e),
            Err(reason) => bad.push(super::locks::BadLine {
                line: i + 1,
                reason,
                excerpt: crate::text::truncate(line, 120),
            }),
        }
    }
    (entries, bad)
}

fn parse_entry(line: &str) -> Result<FileEntry, &'static str> {
    let line = line.trim_start();
    let (fid, rest) = line
        .split_once(char::is_whitespace)
        .ok_or("no columns after the file id")?;
    // `net` prints the id with %d in some builds: accept a negative 32-bit value too.
    let fid = fid
        .parse::<u32>()
        .or_else(|_| fid.parse::<i32>().map(|v| v as u32))
        .map_err(|_| "the file id is not a 32-bit number")?;
    // The user name may hold spaces (Windows accounts); the perms column (`0x..`) ends it.
    let perms_at = rest.find(" 0x").ok_or("no perms column")?;
    let user = rest[..perms_at].trim().to_owned();
    let rest = &rest[perms_at + 1..];
    let (_perms, rest) = rest
        .split_once(char::is_whitespace)
        .ok_or("no locks column")?;
    let rest = rest.trim_start();
    let (locks, rest) = rest
        .split_once(char::is_whitespace)
        .ok_or("no path column")?;
    locks
        .parse::<u64>()
        .map_err(|_| "the locks column is not a number")?;
    let path = rest.trim_start();
    if !path.starts_with("C:") {
        return Err("the path does not start with C:");
    }
    Ok(FileEntry {
        fid,
        user,
        path: path.to_owned(),
    })
}

/// The NetFileEnum path of an open smbstatus shows as `service_path` + `name`.
pub fn enum_path(service_path: &str, name: &str) -> String {
    let mut p = String::with_capacity(2 + service_path.len() + 1 + name.len());
    p.push_str("C:");
    p.push_str(service_path);
    if name != "." {
        p.push('/');
        p.push_str(name);
    }
    p.replace('/', "\\")
}

/// What one NetFileClose did, from `net rpc file close`'s exit code (the WERROR, cut to a
/// byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseOutcome {
    /// WERR_OK: smbd was told to close the open.
    Closed,
    /// WERR_FILE_NOT_FOUND (2): no live open has that id any more (the client closed it).
    Gone,
    /// WERR_ACCESS_DENIED (5): the login lacks SeDiskOperatorPrivilege.
    AccessDenied,
    /// Anything else: the connection or the login failed, or an unknown error.
    Other(Option<i32>),
}

impl CloseOutcome {
    /// Reads an exit code.
    pub fn from_code(code: Option<i32>) -> Self {
        match code {
            Some(0) => Self::Closed,
            Some(2) => Self::Gone,
            Some(5) => Self::AccessDenied,
            other => Self::Other(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_enum_table() {
        let text = "\nEnumerating open files on remote server:\n\n\n\
FileId  Opened by            Perms  Locks  Path\n\
------  ---------            -----  -----  ---- \n\
713097221 labu                 0x01   0      C:\\srv\\data\\k4\n\
1079771145 labu                 0x01   0      C:\\srv\\data\\sp   ace é.txt\n\
-2 Domain User          0x03   2      C:\\srv\\data\n\
4294967295 x 0x3 0 C:\\a\n\
12 labu\n\
99 labu 0x01 zero C:\\a\n\
98 labu 0x01 0 /a\n\
junk\n";
        let (entries, bad) = parse_enum(text);
        assert_eq!(entries.len(), 4, "{bad:?}");
        assert_eq!(entries[1].path, "C:\\srv\\data\\sp   ace é.txt");
        assert_eq!(entries[2].fid, 0xFFFF_FFFE);
        assert_eq!(entries[2].user, "Domain User");
        assert_eq!(entries[3].fid, u32::MAX);
        assert_eq!(bad.len(), 4);
        assert_eq!(bad[0].reason, "no perms column");
        assert_eq!(bad[1].reason, "the locks column is not a number");
        assert_eq!(bad[2].reason, "the path does not start with C:");
    }

    #[test]
    fn enum_paths_match_smbstatus_names() {
        assert_eq!(enum_path("/srv/data", "."), "C:\\srv\\data");
        assert_eq!(
            enum_path("/srv/data", "a/b c.txt"),
            "C:\\srv\\data\\a\\b c.txt"
        );
    }

    #[test]
    fn exit_codes() {
        assert_eq!(CloseOutcome::from_code(Some(0)), CloseOutcome::Closed);
        assert_eq!(CloseOutcome::from_code(Some(2)), CloseOutcome::Gone);
        assert_eq!(CloseOutcome::from_code(Some(5)), CloseOutcome::AccessDenied);
        assert_eq!(
            CloseOutcome::from_code(Some(235)),
            CloseOutcome::Other(Some(235))
        );
        assert_eq!(CloseOutcome::from_code(None), CloseOutcome::Other(None));
    }
}
