//! One share of the memory store: its directory tree and the handles open in it.

use std::collections::{BTreeMap, HashMap};

use crate::handles::{PathKind, PathProperties};
use crate::protocol::{AccessRights, Handle, HandleId, StorageError};
use crate::text::fold;

/// Index of a node in [`Share::nodes`]; the root directory is node 0.
pub(super) type NodeIx = u32;

/// A file or directory.
pub(super) struct Node {
    /// Full path below the share root (empty for the root).
    pub path: Box<str>,
    pub parent: NodeIx,
    pub file_id: u64,
    /// Children by case-folded name (Azure Files names are case-insensitive and
    /// case-preserving; the spelling kept is the one in `path`); `None` for files.
    pub children: Option<HashMap<Box<str>, NodeIx>>,
    /// Ids of the handles open on this node, ascending.
    pub handles: Vec<u64>,
    /// Unix seconds of its creation: its creation, last write and change time alike, since
    /// the store holds no content to write.
    pub created: i64,
}

impl Node {
    pub fn is_dir(&self) -> bool {
        self.children.is_some()
    }
}

/// A client that holds handles, shared by all its handles.
pub(super) struct Client {
    pub ip: Box<str>,
    pub name: Option<Box<str>>,
}

/// One open handle, packed: its node and client are indexes, times are Unix seconds.
#[derive(Clone, Copy)]
pub(super) struct OpenHandle {
    pub node: NodeIx,
    pub client: u32,
    pub session_id: u64,
    pub open_time: i64,
    /// Unix seconds of the last reconnect; `i64::MIN` when there was none.
    pub reconnect_time: i64,
    pub rights: u8,
    /// The store refuses to close this handle (to exercise the failed count).
    pub fail_close: bool,
}

/// The longest path below a share root, as Azure Files bounds it.
pub const MAX_PATH_CHARS: usize = 2048;

/// What kind of node to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// A file.
    File,
    /// A directory.
    Directory,
}

/// A share: nodes, handles by id (the listing order), and interned clients.
pub(super) struct Share {
    pub nodes: Vec<Node>,
    pub handles: BTreeMap<u64, OpenHandle>,
    clients: Vec<Client>,
    client_index: HashMap<(Box<str>, Option<Box<str>>), u32>,
}

impl Share {
    pub fn new() -> Self {
        let root = Node {
            path: "".into(),
            parent: 0,
            file_id: 0,
            children: Some(HashMap::new()),
            handles: Vec::new(),
            created: jiff::Timestamp::now().as_second(),
        };
        Self {
            nodes: vec![root],
            handles: BTreeMap::new(),
            clients: Vec::new(),
            client_index: HashMap::new(),
        }
    }

    /// The node at `path`: 404 `ParentNotFound` when a parent is missing or is a file,
    /// `ResourceNotFound` when the last segment is.
    pub fn resolve(&self, path: &str) -> Result<NodeIx, StorageError> {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let mut node = 0;
        for (i, seg) in segments.iter().enumerate() {
            let last = i + 1 == segments.len();
            // A file has no children: below it, the parent is what is missing.
            let Some(children) = self.nodes[node as usize].children.as_ref() else {
                return Err(StorageError::parent_not_found());
            };
            node = match children.get(fold(seg).as_ref()).copied() {
                Some(n) => n,
                None if last => return Err(StorageError::resource_not_found()),
                None => return Err(StorageError::parent_not_found()),
            };
        }
        Ok(node)
    }

    /// What the node at `path` is, with its properties (see [`Share::resolve`] for the 404s).
    pub fn properties(&self, path: &str) -> Result<PathProperties, StorageError> {
        let node = &self.nodes[self.resolve(path)? as usize];
        let parent_id = self.nodes[node.parent as usize].file_id;
        let at = timestamp(node.created);
        Ok(PathProperties {
            kind: if node.is_dir() {
                PathKind::Directory
            } else {
                PathKind::File
            },
            file_id: node.file_id,
            parent_id,
            size: 0,
            created: at,
            last_write: at,
            changed: at,
            read_only: false,
        })
    }

    /// Creates `path` as `kind`, with missing parents as directories; returns the existing node
    /// when it is already there with that kind.
    pub fn create(
        &mut self,
        path: &str,
        kind: NodeKind,
        new_node: &mut dyn FnMut() -> Result<u64, String>,
    ) -> Result<NodeIx, String> {
        if path.chars().count() > MAX_PATH_CHARS {
            return Err(format!(
                "path of {} characters is longer than Azure Files' bound of {MAX_PATH_CHARS}",
                path.chars().count()
            ));
        }
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let mut node: NodeIx = 0;
        let mut so_far = String::new();
        for (i, seg) in segments.iter().enumerate() {
            validate_name(seg).map_err(|why| format!("path {path:?}: segment {seg:?} {why}"))?;
            if !so_far.is_empty() {
                so_far.push('/');
            }
            so_far.push_str(seg);
            let want_dir = i + 1 < segments.len() || kind == NodeKind::Directory;
            let existing = match &self.nodes[node as usize].children {
                Some(children) => children.get(fold(seg).as_ref()).copied(),
                None => {
                    return Err(format!(
                        "path {path:?}: {:?} is a file, not a directory",
                        self.nodes[node as usize].path
                    ));
                }
            };
            node = match existing {
                Some(n)
                    if self.nodes[n as usize].is_dir() != want_dir && i + 1 == segments.len() =>
                {
                    let is = if want_dir { "a file" } else { "a directory" };
                    return Err(format!("path {path:?} exists and is {is}"));
                }
                Some(n) => {
                    so_far = self.nodes[n as usize].path.to_string();
                    n
                }
                None => {
                    let ix = self.nodes.len() as NodeIx;
                    self.nodes.push(Node {
                        path: so_far.as_str().into(),
                        parent: node,
                        file_id: new_node().map_err(|why| format!("path {path:?}: {why}"))?,
                        children: want_dir.then(HashMap::new),
                        handles: Vec::new(),
                        created: jiff::Timestamp::now().as_second(),
                    });
                    self.nodes[node as usize]
                        .children
                        .as_mut()
                        .expect("checked above")
                        .insert(fold(seg).into(), ix);
                    ix
                }
            };
        }
        Ok(node)
    }

    /// Interns a client.
    pub fn client(&mut self, ip: &str, name: Option<&str>) -> u32 {
        let key: (Box<str>, Option<Box<str>>) = (ip.into(), name.map(Into::into));
        if let Some(&ix) = self.client_index.get(&key) {
            return ix;
        }
        let ix = self.clients.len() as u32;
        self.clients.push(Client {
            ip: key.0.clone(),
            name: key.1.clone(),
        });
        self.client_index.insert(key, ix);
        ix
    }

    /// Records an open handle.
    pub fn open(&mut self, id: u64, handle: OpenHandle) {
        self.nodes[handle.node as usize].handles.push(id);
        self.handles.insert(id, handle);
    }

    /// Forgets a handle; returns whether it was open.
    pub fn remove(&mut self, id: u64) -> bool {
        let Some(h) = self.handles.remove(&id) else {
            return false;
        };
        let list = &mut self.nodes[h.node as usize].handles;
        if let Ok(pos) = list.binary_search(&id) {
            list.remove(pos);
        }
        true
    }

    /// Whether `node` is `dir` or lies below it.
    pub fn is_under(&self, mut node: NodeIx, dir: NodeIx) -> bool {
        loop {
            if node == dir {
                return true;
            }
            if node == 0 {
                return false;
            }
            node = self.nodes[node as usize].parent;
        }
    }

    /// The handles in scope after `after`, ascending: those on `node`, or with `recursive`
    /// those on it and below it.
    pub fn scope(
        &self,
        node: NodeIx,
        recursive: bool,
        after: u64,
    ) -> Box<dyn Iterator<Item = (u64, &OpenHandle)> + '_> {
        let from = after.saturating_add(1);
        if !recursive {
            let ids = &self.nodes[node as usize].handles;
            let start = ids.partition_point(|&id| id < from);
            Box::new(
                ids[start..]
                    .iter()
                    .filter_map(|id| self.handles.get(id).map(|h| (*id, h))),
            )
        } else if node == 0 {
            Box::new(self.handles.range(from..).map(|(id, h)| (*id, h)))
        } else {
            Box::new(
                self.handles
                    .range(from..)
                    .filter(move |(_, h)| self.is_under(h.node, node))
                    .map(|(id, h)| (*id, h)),
            )
        }
    }

    /// The wire form of a handle.
    pub fn to_handle(&self, id: u64, h: &OpenHandle) -> Handle {
        let node = &self.nodes[h.node as usize];
        let parent_id = if h.node == 0 {
            0
        } else {
            self.nodes[node.parent as usize].file_id
        };
        let client = &self.clients[h.client as usize];
        Handle {
            handle_id: HandleId(id),
            path: node.path.to_string(),
            file_id: node.file_id,
            parent_id,
            session_id: h.session_id,
            client_ip: client.ip.to_string(),
            client_name: client.name.as_deref().map(str::to_owned),
            open_time: timestamp(h.open_time),
            last_reconnect_time: (h.reconnect_time != i64::MIN)
                .then(|| timestamp(h.reconnect_time)),
            access_rights: Some(AccessRights::from_bits(h.rights)),
        }
    }

    /// Counts of directories and files (the root not included).
    pub fn node_counts(&self) -> (usize, usize) {
        let dirs = self.nodes.iter().skip(1).filter(|n| n.is_dir()).count();
        (dirs, self.nodes.len() - 1 - dirs)
    }
}

fn timestamp(secs: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(secs).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// Azure Files forbids these in file and directory names, and so do we.
fn validate_name(name: &str) -> Result<(), &'static str> {
    if name == "." || name == ".." {
        return Err("is not a name ('.' and '..' are not allowed)");
    }
    if name.len() > 255 {
        return Err("is longer than 255 bytes");
    }
    if name.chars().any(|c| c < ' ' || "\"\\:|<>*?".contains(c)) {
        return Err(
            "holds a character Azure Files forbids (\" \\ : | < > * ? or a control character)",
        );
    }
    Ok(())
}
