#if canImport(Glibc)
import Glibc
#endif

/// Replacing a file so that readers see the old or the new content, never a mix: a temporary
/// file in the same directory with the same mode and owner, fsync, rename, fsync the directory.
public enum AtomicFile {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    public static func replace(path requested: String, with text: String) throws(Failure) {
        // Through a symlink (dotfile managers): replace the file it points to, keep the link.
        let path = Path.resolvingSymlinks(requested)
        var info = stat()
        let exists = stat(path, &info) == 0
        let directory = Path.directory(of: path).isEmpty ? "." : Path.directory(of: path)
        let name = Path.lastComponent(of: path)
        let temporary = "\(directory)/.\(name).ecto-tunnel-\(getpid())"
        let fd = open(
            temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, exists ? info.st_mode & 0o7777 : 0o600)
        guard fd >= 0 else { throw Failure(description: "create \(temporary): \(String(cString: strerror(errno)))") }
        var ok = true
        var problem = ""
        if exists {
            fchmod(fd, info.st_mode & 0o7777)
            if geteuid() == 0 { fchown(fd, info.st_uid, info.st_gid) }
        }
        let bytes = Array(text.utf8)
        var offset = 0
        while ok && offset < bytes.count {
            do {
                offset += try Syscall.blocking("write") {
                    bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, bytes.count - offset) }
                }
            } catch {
                ok = false
                problem = "write \(temporary): \(error.message)"
            }
        }
        if ok && fsync(fd) != 0 {
            ok = false
            problem = "fsync \(temporary): \(String(cString: strerror(errno)))"
        }
        Syscall.close(fd)
        if ok && rename(temporary, path) != 0 {
            ok = false
            problem = "rename to \(path): \(String(cString: strerror(errno)))"
        }
        guard ok else {
            unlink(temporary)
            throw Failure(description: problem)
        }
        let dirFD = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dirFD >= 0 {
            fsync(dirFD)
            Syscall.close(dirFD)
        }
    }
}
