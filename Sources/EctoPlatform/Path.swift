#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Path arithmetic on strings, as `NSString`'s path methods did (they are not in
/// FoundationEssentials). Only `resolvingSymlinks` looks at the file system.
public enum Path {
    /// Everything before the last component (`NSString.deletingLastPathComponent`):
    /// "/a/b" → "/a", "/a" → "/", "a" → "", "a/b/" → "a", "/" → "/".
    public static func directory(of path: String) -> String {
        let trimmed = withoutTrailingSlashes(path)
        guard let slash = trimmed.lastIndex(of: "/") else { return "" }
        let parent = withoutTrailingSlashes(String(trimmed[..<slash]))
        return parent.isEmpty ? "/" : parent
    }

    /// The last component (`NSString.lastPathComponent`): "/a/b" → "b", "a/b/" → "b",
    /// "/" → "/", "" → "".
    public static func lastComponent(of path: String) -> String {
        let trimmed = withoutTrailingSlashes(path)
        guard let slash = trimmed.lastIndex(of: "/") else { return trimmed }
        let last = String(trimmed[trimmed.index(after: slash)...])
        return last.isEmpty ? "/" : last
    }

    /// `path` made absolute against the working directory if it is relative, with every
    /// symlink, "." and ".." resolved (`realpath`). Components that do not exist (yet) are
    /// kept as given after the longest prefix that does.
    public static func resolvingSymlinks(_ path: String) -> String {
        guard !path.isEmpty else { return path }
        if let real = realPath(path) { return real }
        let parent = directory(of: path)
        let name = lastComponent(of: path)
        guard name != "/" else { return path }
        let base: String
        if parent.isEmpty {
            guard let cwd = realPath(".") else { return path }
            base = cwd
        } else {
            base = parent == path ? parent : resolvingSymlinks(parent)
        }
        switch name {
        case ".": return base
        case "..": return directory(of: base)
        default: return base == "/" ? "/" + name : base + "/" + name
        }
    }

    private static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    private static func withoutTrailingSlashes(_ path: String) -> String {
        var path = Substring(path)
        while path.count > 1, path.hasSuffix("/") { path.removeLast() }
        return String(path)
    }
}
