//! The lab's anonymous FTP tree, generated: course material of the kind university FTP servers
//! published (a README, chapter notes, the textbook's socket programs, a data file big enough
//! that its data connection is seen carrying it), under the lab directory for anyone to inspect.

use crate::topology::FtpSpec;
use std::path::{Path, PathBuf};

/// The textbook's TCP server (Python), as the tree's socket-programming example.
const TCP_SERVER: &str = "from socket import *\n\
serverPort = 12000\n\
serverSocket = socket(AF_INET, SOCK_STREAM)\n\
serverSocket.bind(('', serverPort))\n\
serverSocket.listen(1)\n\
print('The server is ready to receive')\n\
while True:\n\
    connectionSocket, addr = serverSocket.accept()\n\
    sentence = connectionSocket.recv(1024).decode()\n\
    capitalizedSentence = sentence.upper()\n\
    connectionSocket.send(capitalizedSentence.encode())\n\
    connectionSocket.close()\n";

/// The textbook's TCP client (Python).
const TCP_CLIENT: &str = "from socket import *\n\
serverName = 'servername'\n\
serverPort = 12000\n\
clientSocket = socket(AF_INET, SOCK_STREAM)\n\
clientSocket.connect((serverName, serverPort))\n\
sentence = input('Input lowercase sentence:')\n\
clientSocket.send(sentence.encode())\n\
modifiedSentence = clientSocket.recv(1024)\n\
print('From Server: ', modifiedSentence.decode())\n\
clientSocket.close()\n";

/// Chapter 2's section titles, for the generated notes.
const SECTIONS: [&str; 7] = [
    "2.1 Principles of Network Applications",
    "2.2 The Web and HTTP",
    "2.3 Electronic Mail in the Internet",
    "2.4 DNS: The Internet's Directory Service",
    "2.5 Peer-to-Peer File Distribution",
    "2.6 Video Streaming and Content Distribution Networks",
    "2.7 Socket Programming: Creating Network Applications",
];

fn notes() -> String {
    let mut out = String::from("Chapter 2: Application Layer — lecture notes\n\n");
    for (i, s) in SECTIONS.iter().enumerate() {
        out.push_str(&format!("{s}\n"));
        for k in 1..=12 {
            out.push_str(&format!(
                "  {}.{k} An application-layer protocol defines the types of messages exchanged, their syntax,\n      their semantics, and the rules for when and how a process sends and responds to messages.\n",
                i + 1
            ));
        }
        out.push('\n');
    }
    out
}

fn problems() -> String {
    let mut out = String::from("Chapter 2: homework problems\n\n");
    let questions = [
        "List five nonproprietary Internet applications and the application-layer protocols they use.",
        "Why do HTTP, SMTP and IMAP run on top of TCP rather than on UDP?",
        "FTP sends control information out-of-band. What does that mean, and why does FTP keep state?",
        "How many data connections does an FTP session that lists a directory and fetches three files open?",
        "Suppose Alice with a Web-based e-mail account sends a message to Bob, who reads it over IMAP. Trace it.",
    ];
    for (i, q) in questions.iter().enumerate() {
        out.push_str(&format!("P{}. {q}\n\n", i + 1));
    }
    out
}

/// Deterministic bytes (xorshift), so the file's size and digest are the same in every lab.
fn data(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes the public tree of `ftp` under `root` (one directory per host address) and returns it.
pub fn write_tree(ftp: &FtpSpec, root: &Path) -> std::io::Result<PathBuf> {
    let dir = root.join(ftp.addr.to_string());
    let course = dir.join("pub/kurose-ross");
    std::fs::create_dir_all(course.join("socket-programming"))?;
    std::fs::create_dir_all(dir.join("pub/incoming"))?;
    std::fs::write(
        dir.join("pub/README.txt"),
        format!(
            "Welcome to {name} ({addr}), the anonymous FTP archive of the appnet lab.\n\
             Log in as anonymous; course material is under kurose-ross/.\n",
            name = ftp.name,
            addr = ftp.addr
        ),
    )?;
    std::fs::write(course.join("ch2-notes.txt"), notes())?;
    std::fs::write(course.join("ch2-problems.txt"), problems())?;
    std::fs::write(course.join("socket-programming/TCPServer.py"), TCP_SERVER)?;
    std::fs::write(course.join("socket-programming/TCPClient.py"), TCP_CLIENT)?;
    std::fs::write(course.join("trace-data.bin"), data(256 << 10))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tree_holds_the_course_material() {
        let root = appnet_netkit::harness::TempDir::new("lab-ftp-tree");
        let spec =
            FtpSpec { name: "ftp.cs.umass.edu".into(), addr: "127.0.10.20".parse().unwrap(), port: 2121 };
        let dir = write_tree(&spec, &root).unwrap();
        let course = dir.join("pub/kurose-ross");
        assert!(
            std::fs::read_to_string(course.join("ch2-notes.txt")).unwrap().contains("2.7 Socket Programming")
        );
        assert!(
            std::fs::read_to_string(course.join("socket-programming/TCPServer.py"))
                .unwrap()
                .contains("accept()")
        );
        let bin = std::fs::read(course.join("trace-data.bin")).unwrap();
        assert_eq!(bin.len(), 256 << 10);
        assert_eq!(bin, data(256 << 10), "deterministic");
        assert!(std::fs::read_to_string(dir.join("pub/README.txt")).unwrap().contains("127.0.10.20"));
    }
}
