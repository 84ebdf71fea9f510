//! The owner of a client's loopback socket on Windows: `GetExtendedTcpTable`
//! (`TCP_TABLE_OWNER_PID_ALL`) gives each socket's owning process id; that
//! process's token names its account (a SID), compared with the daemon's own.
//!
//! Accounts are SIDs here, not uids, so only the daemon's own account is served;
//! `allowed_users` / `allowed_groups` do not apply yet (docs/windows.md). The
//! decoding of the table rows is pure and lives in the parent module.
#![allow(unsafe_code)]

use std::net::SocketAddr;

use windows_sys::Win32::Foundation::{CloseHandle, ERROR_INSUFFICIENT_BUFFER, HANDLE, NO_ERROR};
use windows_sys::Win32::NetworkManagement::IpHelper::{
    GetExtendedTcpTable, MIB_TCP6ROW_OWNER_PID, MIB_TCPROW_OWNER_PID, TCP_TABLE_OWNER_PID_ALL,
};
use windows_sys::Win32::Networking::WinSock::{AF_INET, AF_INET6};
use windows_sys::Win32::Security::{
    EqualSid, GetTokenInformation, TOKEN_QUERY, TOKEN_USER, TokenUser,
};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, OpenProcess, OpenProcessToken, PROCESS_QUERY_LIMITED_INFORMATION,
};

use super::{LookupError, TableRow, find_pid, normalise};

/// How often the table is fetched again when it grew between the size query and
/// the read.
const TABLE_ATTEMPTS: usize = 4;

/// The daemon's own effective uid when the client runs as the daemon's account
/// (what [`crate::server::users::UserPolicy`] admits as its own); otherwise an
/// error naming the owning process. Blocking.
pub fn lookup(client: SocketAddr, server: SocketAddr) -> Result<u32, LookupError> {
    let rows = tcp_rows(matches!(normalise(client), SocketAddr::V6(_)))?;
    let pid = find_pid(rows, client, server).ok_or(LookupError::NotFound { client, server })?;
    // Pid 0 is the idle process: the table knows no owner (Wine says so for sockets
    // it cannot attribute). Never guess.
    if pid == 0 {
        return Err(LookupError::NoProcess { client });
    }
    let own = crate::server::users::effective_uid();
    if pid == std::process::id() {
        return Ok(own);
    }
    let theirs = Token::of_process(pid)?.user()?;
    let ours = Token::current()?.user()?;
    // SAFETY: both buffers hold a TOKEN_USER whose SID pointer points into the same
    // buffer, alive for this call.
    let same = unsafe { EqualSid(sid(&theirs), sid(&ours)) } != 0;
    if same {
        Ok(own)
    } else {
        Err(LookupError::ForeignAccount { pid })
    }
}

fn os_error(call: &'static str) -> LookupError {
    LookupError::Os {
        call,
        source: std::io::Error::last_os_error(),
    }
}

/// Every TCP socket of one family with its owner.
fn tcp_rows(v6: bool) -> Result<Vec<TableRow>, LookupError> {
    let family = u32::from(if v6 { AF_INET6 } else { AF_INET });
    let mut size = 0u32;
    // u64 elements: the table's rows need 4-byte alignment, a Vec<u8> promises 1.
    let mut buf: Vec<u64> = Vec::new();
    for _ in 0..TABLE_ATTEMPTS {
        // SAFETY: `buf` has room for `size` bytes (size 0: a size query only).
        let rc = unsafe {
            GetExtendedTcpTable(
                buf.as_mut_ptr().cast(),
                &mut size,
                0,
                family,
                TCP_TABLE_OWNER_PID_ALL,
                0,
            )
        };
        match rc {
            NO_ERROR => return Ok(decode(&buf, size as usize, v6)),
            ERROR_INSUFFICIENT_BUFFER => buf = vec![0u64; (size as usize).div_ceil(8)],
            other => {
                return Err(LookupError::Os {
                    call: "GetExtendedTcpTable",
                    source: std::io::Error::from_raw_os_error(other as i32),
                });
            }
        }
    }
    Err(LookupError::Os {
        call: "GetExtendedTcpTable",
        source: std::io::Error::other("the table kept growing"),
    })
}

/// The rows of a `MIB_TCPTABLE_OWNER_PID` / `MIB_TCP6TABLE_OWNER_PID` of `len`
/// bytes: a DWORD count, then the rows. A count that overruns the buffer is cut
/// to what fits.
fn decode(buf: &[u64], len: usize, v6: bool) -> Vec<TableRow> {
    let len = len.min(buf.len() * 8);
    if len < 4 {
        return Vec::new();
    }
    let base = buf.as_ptr().cast::<u8>();
    // SAFETY: `len >= 4` bytes are initialised; the count is the first DWORD.
    let count = unsafe { base.cast::<u32>().read() } as usize;
    let row_size = if v6 {
        size_of::<MIB_TCP6ROW_OWNER_PID>()
    } else {
        size_of::<MIB_TCPROW_OWNER_PID>()
    };
    let fits = (len - 4) / row_size;
    (0..count.min(fits))
        .map(|i| {
            // SAFETY: row i lies within the first `len` bytes (checked above); rows
            // start at offset 4 and are 4-aligned, like the u64 buffer plus 4.
            unsafe {
                let at = base.add(4 + i * row_size);
                if v6 {
                    let r = at.cast::<MIB_TCP6ROW_OWNER_PID>().read_unaligned();
                    TableRow::v6(
                        (r.ucLocalAddr, r.dwLocalPort),
                        (r.ucRemoteAddr, r.dwRemotePort),
                        r.dwOwningPid,
                    )
                } else {
                    let r = at.cast::<MIB_TCPROW_OWNER_PID>().read_unaligned();
                    TableRow::v4(
                        (r.dwLocalAddr, r.dwLocalPort),
                        (r.dwRemoteAddr, r.dwRemotePort),
                        r.dwOwningPid,
                    )
                }
            }
        })
        .collect()
}

/// A process token, closed when dropped.
struct Token(HANDLE);

impl Token {
    fn current() -> Result<Token, LookupError> {
        // SAFETY: the pseudo-handle of the current process needs no closing.
        Token::open(unsafe { GetCurrentProcess() })
    }

    fn of_process(pid: u32) -> Result<Token, LookupError> {
        // SAFETY: plain call; a null handle is checked below.
        let process = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
        if process.is_null() {
            return Err(os_error("OpenProcess"));
        }
        let token = Token::open(process);
        // SAFETY: `process` is a handle we opened.
        unsafe { CloseHandle(process) };
        token
    }

    fn open(process: HANDLE) -> Result<Token, LookupError> {
        let mut token: HANDLE = std::ptr::null_mut();
        // SAFETY: `token` is a valid out pointer.
        if unsafe { OpenProcessToken(process, TOKEN_QUERY, &mut token) } == 0 {
            return Err(os_error("OpenProcessToken"));
        }
        Ok(Token(token))
    }

    /// The token's `TOKEN_USER` (the account SID and the buffer it points into).
    fn user(&self) -> Result<Vec<u64>, LookupError> {
        let mut needed = 0u32;
        // SAFETY: a size query with no buffer.
        unsafe { GetTokenInformation(self.0, TokenUser, std::ptr::null_mut(), 0, &mut needed) };
        if needed == 0 {
            return Err(os_error("GetTokenInformation"));
        }
        let mut buf = vec![0u64; (needed as usize).div_ceil(8)];
        // SAFETY: `buf` holds at least `needed` bytes, 8-aligned.
        let ok = unsafe {
            GetTokenInformation(
                self.0,
                TokenUser,
                buf.as_mut_ptr().cast(),
                needed,
                &mut needed,
            )
        };
        if ok == 0 {
            return Err(os_error("GetTokenInformation"));
        }
        Ok(buf)
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        // SAFETY: a token handle we opened.
        unsafe { CloseHandle(self.0) };
    }
}

/// The SID inside a `TOKEN_USER` buffer from [`Token::user`].
fn sid(token_user: &[u64]) -> *mut core::ffi::c_void {
    // SAFETY: the buffer starts with a TOKEN_USER written by GetTokenInformation.
    unsafe { (*token_user.as_ptr().cast::<TOKEN_USER>()).User.Sid }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    /// A real loopback connection of this process: its client end is found in the
    /// table (the row decoding is right against the real API) and is never taken for
    /// another account. Windows attributes it to this process, hence this account;
    /// Wine 8.0 often lists it with pid 0, which must refuse (`NoProcess`), never
    /// admit.
    #[test]
    fn a_connection_of_this_process_is_found_and_never_taken_for_another_account() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let server = listener.local_addr().expect("addr");
        let stream = TcpStream::connect(server).expect("connect");
        let client = stream.local_addr().expect("client addr");
        let (_accepted, peer) = listener.accept().expect("accept");
        assert_eq!(peer, client);
        match lookup(client, server) {
            Ok(uid) => assert_eq!(uid, crate::server::users::effective_uid()),
            Err(LookupError::NoProcess { client: c }) => assert_eq!(c, client),
            Err(e) => panic!("the client's own socket: {e}"),
        }
        // A port nobody uses has no row at all.
        let unknown = SocketAddr::from(([127, 0, 0, 1], 1));
        assert!(matches!(
            lookup(unknown, server),
            Err(LookupError::NotFound { .. })
        ));
    }
}
