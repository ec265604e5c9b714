//! Who may call what: every RPC of the server has an access class, and each role a set of
//! classes. What is not listed is denied.

/// The roles a caller can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The watcher: every mutating RPC, and the reads.
    Writer,
    /// An announcer, acting for the node its token's pod runs on only.
    Announcer,
    /// An operator or a tool: the reads, with BGP passwords redacted.
    Reader,
}

impl Role {
    /// Its name in logs and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Writer => "writer",
            Self::Announcer => "announcer",
            Self::Reader => "reader",
        }
    }
}

/// What kind of access an RPC needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Health checks: anyone, no token.
    Public,
    /// Inspection (and server reflection): readers and the writer.
    Read,
    /// A change to configuration, Services or nodes: the writer only.
    Write,
    /// A node's own assignments (its stream) or session report: that node's announcer only.
    OwnNode,
    /// One node's assignments, passwords redacted: readers, the writer, that node's announcer.
    NodeRead,
}

const ALLOCATOR: &str = "/metallb.v1.Allocator/";

/// The access `path` (`/package.Service/Method`) needs, or `None` for a method no role may
/// call (an unknown one: deny by default).
pub fn access(path: &str) -> Option<Access> {
    if path.starts_with("/grpc.health.v1.Health/") {
        return Some(Access::Public);
    }
    if path.starts_with("/grpc.reflection.v1.ServerReflection/")
        || path.starts_with("/grpc.reflection.v1alpha.ServerReflection/")
    {
        return Some(Access::Read);
    }
    let method = path.strip_prefix(ALLOCATOR)?;
    Some(match method {
        "ApplyConfig" | "UpsertService" | "DeleteService" | "UpdateServices" | "SyncServices"
        | "UpdateNode" | "DeleteNode" => Access::Write,
        "ListPools" | "ListLeases" | "GetLease" | "ListSessions" | "CheckConfig" => Access::Read,
        "WatchAssignments" | "ReportSessions" => Access::OwnNode,
        "GetNodeAssignments" => Access::NodeRead,
        _ => return None,
    })
}

/// Whether `role` may make calls needing `access` (the node itself is checked by the RPC,
/// which knows which node the request names).
pub fn allows(role: Role, access: Access) -> bool {
    match access {
        Access::Public => true,
        Access::Read | Access::NodeRead if role != Role::Announcer => true,
        Access::Write => role == Role::Writer,
        Access::OwnNode | Access::NodeRead => role == Role::Announcer,
        Access::Read => false,
    }
}

/// Whether `access` changes state, so that the call is logged with its caller.
pub fn is_mutating(access: Access) -> bool {
    access == Access::Write
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_of_the_security_model() {
        use Role::*;
        let cases = [
            ("/metallb.v1.Allocator/ApplyConfig", [true, false, false]),
            ("/metallb.v1.Allocator/SyncServices", [true, false, false]),
            ("/metallb.v1.Allocator/DeleteService", [true, false, false]),
            ("/metallb.v1.Allocator/UpdateServices", [true, false, false]),
            ("/metallb.v1.Allocator/ListPools", [true, false, true]),
            ("/metallb.v1.Allocator/CheckConfig", [true, false, true]),
            ("/metallb.v1.Allocator/GetLease", [true, false, true]),
            ("/metallb.v1.Allocator/WatchAssignments", [false, true, false]),
            ("/metallb.v1.Allocator/ReportSessions", [false, true, false]),
            ("/metallb.v1.Allocator/GetNodeAssignments", [true, true, true]),
            ("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", [true, false, true]),
            ("/grpc.health.v1.Health/Check", [true, true, true]),
        ];
        for (path, expected) in cases {
            let access = access(path).unwrap();
            let got = [Writer, Announcer, Reader].map(|role| allows(role, access));
            assert_eq!(got, expected, "{path}");
        }
    }

    #[test]
    fn unknown_methods_are_denied_to_everyone() {
        assert_eq!(access("/metallb.v1.Allocator/Nope"), None);
        assert_eq!(access("/other.Service/ApplyConfig"), None);
    }
}
