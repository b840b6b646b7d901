/// A small reader for the user's OpenSSH client configuration (`~/.ssh/config`), enough to resolve an
/// `ssh_host` alias: `Host` blocks (patterns with `*`, `?` and `!`, several per line), `Include`
/// (relative to `~/.ssh`, `*`/`?` globs in the last path component, at most 16 levels deep),
/// `HostName` (with `%h`), `User`, `Port`, `IdentityFile` (every one, in order, as ssh accumulates
/// them), `CertificateFile`, `IdentitiesOnly`, `HostKeyAlias` and `UserKnownHostsFile` (its paths). As in ssh, the first value obtained for a keyword wins and keywords are
/// case-insensitive; `key value` and `key=value` are accepted, values may be quoted.
/// `Match` blocks are not evaluated: they are skipped and their locations are reported.
/// `/etc/ssh/ssh_config` is not read.

/// A value taken from an ssh config file, with where it came from.
public struct SSHConfigValue: Sendable, Equatable {
    public var value: String
    public var file: String
    public var line: Int

    public init(value: String, file: String, line: Int) {
        self.value = value
        self.file = file
        self.line = line
    }

    /// `file:line`, with the home directory shown as `~`.
    func location(home: String) -> String {
        "\(SSHClientConfig.abbreviate(file, home: home)):\(line)"
    }
}

/// What `~/.ssh/config` says about one host alias.
public struct SSHHostSettings: Sendable, Equatable {
    /// `%h` and `%%` expanded.
    public var hostName: SSHConfigValue?
    public var user: SSHConfigValue?
    /// As written; the loader checks it.
    public var port: SSHConfigValue?
    /// Every `IdentityFile` that applies, in order (ssh accumulates them): `~`, `%d`, `%u`, `%h`,
    /// `%r`, `%%` expanded; relative paths are taken relative to the home directory. Empty when the
    /// first value obtained is `none`.
    public var identityFiles: [SSHConfigValue]
    /// The first identity file.
    public var identityFile: SSHConfigValue? {
        get { identityFiles.first }
        set { identityFiles = newValue.map { [$0] } ?? [] }
    }
    /// The paths of the first `UserKnownHostsFile` obtained (ssh reads them all, and records new
    /// keys in the first), expanded like the identity files; empty when it is `none`.
    public var userKnownHostsFiles: [SSHConfigValue]
    /// The first known_hosts file.
    public var userKnownHostsFile: SSHConfigValue? {
        get { userKnownHostsFiles.first }
        set { userKnownHostsFiles = newValue.map { [$0] } ?? [] }
    }
    /// Every `CertificateFile` that applies, in order, expanded like the identity files.
    public var certificateFiles: [SSHConfigValue]
    /// `IdentitiesOnly` as written (`yes`/`no`).
    public var identitiesOnly: SSHConfigValue?
    /// `HostKeyAlias`: the name known_hosts is searched (and written) under instead of the host.
    public var hostKeyAlias: SSHConfigValue?
    /// `Match` lines whose blocks were skipped (value: the Match line's arguments).
    public var skippedMatchBlocks: [SSHConfigValue]
    /// Problems found while reading (too deep Include nesting, unterminated quotes, unknown % tokens).
    public var problems: [SSHConfigValue]
    /// Files read, in order.
    public var filesRead: [String]

    // Read for `import ssh-config` (SSHConfigImport); the loader ignores them.

    /// Every `LocalForward` that applies, in order (ssh accumulates them; the value is the line's
    /// arguments joined by one space).
    public var localForwards: [SSHConfigValue]
    public var serverAliveInterval: SSHConfigValue?
    public var serverAliveCountMax: SSHConfigValue?
    public var strictHostKeyChecking: SSHConfigValue?
    public var connectTimeout: SSHConfigValue?
    /// Every other directive that applies (keyword as written, arguments), in order, for the import
    /// to judge. `Host`, `Match` and `Include` lines are not included.
    public var otherDirectives: [SSHConfigDirective]

    public init() {
        identityFiles = []
        userKnownHostsFiles = []
        certificateFiles = []
        skippedMatchBlocks = []
        problems = []
        filesRead = []
        localForwards = []
        otherDirectives = []
    }
}

/// One `Keyword arguments` line of an ssh config file.
public struct SSHConfigDirective: Sendable, Equatable {
    /// As written in the file (case kept).
    public var keyword: String
    public var arguments: [String]
    public var file: String
    public var line: Int

    public init(keyword: String, arguments: [String], file: String, line: Int) {
        self.keyword = keyword
        self.arguments = arguments
        self.file = file
        self.line = line
    }
}

public enum SSHClientConfig {
    public static let maxIncludeDepth = 16

    /// `~/.ssh/config` of the environment's home directory.
    public static func defaultPath(environment: ConfigEnvironment) -> String {
        joinPath(environment.home, ".ssh/config")
    }

    /// Settings that apply to `host` (the alias as written, matched against `Host` patterns).
    /// A missing config file gives empty settings.
    public static func resolve(
        host: String, environment: ConfigEnvironment, configPath: String? = nil
    ) -> SSHHostSettings {
        var reader = Reader(alias: host, env: environment)
        reader.read(path: configPath ?? defaultPath(environment: environment), depth: 0, active: true)
        var s = reader.settings
        let env = environment
        let remoteHost: String
        if var h = s.hostName {
            h.value = reader.expandTokens(h.value, at: h, allowed: ["h"], remoteHost: host, remoteUser: nil)
            s.hostName = h
            remoteHost = h.value
        } else {
            remoteHost = host
        }
        let remoteUser = s.user?.value ?? env.user
        for kp in [
            \SSHHostSettings.identityFiles, \SSHHostSettings.userKnownHostsFiles, \SSHHostSettings.certificateFiles,
        ] {
            // ssh: "none" as the first value means no file.
            if s[keyPath: kp].first?.value.lowercased() == "none" {
                s[keyPath: kp] = []
                continue
            }
            s[keyPath: kp] = s[keyPath: kp].compactMap { v in
                guard v.value.lowercased() != "none" else { return nil }
                var v = v
                var p = reader.expandTokens(
                    v.value, at: v, allowed: ["d", "u", "h", "r"], remoteHost: remoteHost, remoteUser: remoteUser)
                p = expandTilde(p, home: env.home)
                if !p.hasPrefix("/") { p = joinPath(env.home, p) }
                v.value = p
                return v
            }
        }
        s.problems = reader.settings.problems
        return s
    }

    // MARK: - Helpers shared with the loader

    static func joinPath(_ dir: String, _ name: String) -> String {
        if dir.isEmpty { return name }
        return dir.hasSuffix("/") ? dir + name : dir + "/" + name
    }

    /// `~` and `~/x` become the home directory; other paths are returned unchanged.
    /// `~` and `~/…` to `home`; anything else unchanged.
    public static func expandTilde(_ p: String, home: String) -> String {
        if p == "~" { return home }
        if p.hasPrefix("~/") { return joinPath(home, String(p.dropFirst(2))) }
        return p
    }

    /// A path under `home` as `~/…`, for messages.
    public static func abbreviate(_ path: String, home: String) -> String {
        guard !home.isEmpty, home != "/" else { return path }
        let h = home.hasSuffix("/") ? String(home.dropLast()) : home
        if path.hasPrefix(h + "/") { return "~" + path.dropFirst(h.count) }
        return path
    }

    /// Shell-style glob with `*` and `?`. `caseInsensitive` for host patterns.
    static func globMatch(_ pattern: String, _ string: String, caseInsensitive: Bool) -> Bool {
        let p = Array((caseInsensitive ? pattern.lowercased() : pattern).unicodeScalars)
        let s = Array((caseInsensitive ? string.lowercased() : string).unicodeScalars)
        var pi = 0
        var si = 0
        var star = -1
        var mark = 0
        while si < s.count {
            if pi < p.count && (p[pi] == "?" || p[pi] == s[si]) {
                pi += 1
                si += 1
            } else if pi < p.count && p[pi] == "*" {
                star = pi
                mark = si
                pi += 1
            } else if star >= 0 {
                pi = star + 1
                mark += 1
                si = mark
            } else {
                return false
            }
        }
        while pi < p.count && p[pi] == "*" { pi += 1 }
        return pi == p.count
    }

    /// ssh `Host` line semantics: some positive pattern matches and no negated one does.
    static func hostMatches(_ host: String, patterns: [String]) -> Bool {
        var matched = false
        for pat in patterns {
            if pat.hasPrefix("!") {
                if globMatch(String(pat.dropFirst()), host, caseInsensitive: true) { return false }
            } else if globMatch(pat, host, caseInsensitive: true) {
                matched = true
            }
        }
        return matched
    }

    /// Splits a config line into keyword and arguments; nil for blank and comment lines.
    static func tokenize(_ line: Substring) throws(TokenizeError) -> (keyword: String, args: [String])? {
        let chars = Array(line.unicodeScalars)
        var i = 0
        func isSpace(_ c: Unicode.Scalar) -> Bool { c == " " || c == "\t" || c == "\r" }
        while i < chars.count && isSpace(chars[i]) { i += 1 }
        if i == chars.count || chars[i] == "#" { return nil }
        var keyword = ""
        while i < chars.count && !isSpace(chars[i]) && chars[i] != "=" {
            keyword.unicodeScalars.append(chars[i])
            i += 1
        }
        while i < chars.count && isSpace(chars[i]) { i += 1 }
        if i < chars.count && chars[i] == "=" {
            i += 1
            while i < chars.count && isSpace(chars[i]) { i += 1 }
        }
        var args: [String] = []
        while i < chars.count {
            if isSpace(chars[i]) {
                i += 1
                continue
            }
            if chars[i] == "\"" || chars[i] == "'" {
                let q = chars[i]
                i += 1
                var arg = ""
                while i < chars.count && chars[i] != q {
                    arg.unicodeScalars.append(chars[i])
                    i += 1
                }
                if i == chars.count { throw TokenizeError(message: "unterminated quote") }
                i += 1
                args.append(arg)
                continue
            }
            if chars[i] == "#" { break }
            var arg = ""
            while i < chars.count && !isSpace(chars[i]) {
                arg.unicodeScalars.append(chars[i])
                i += 1
            }
            args.append(arg)
        }
        return (keyword.lowercased(), args)
    }

    /// The first word of a config line as written (case kept), without a `=`.
    static func keywordAsWritten(_ line: Substring) -> String {
        let trimmed = line.drop { $0 == " " || $0 == "\t" }
        return String(trimmed.prefix { $0 != " " && $0 != "\t" && $0 != "=" && $0 != "\r" })
    }

    struct TokenizeError: Error {
        var message: String
    }

    private struct Reader {
        let alias: String
        let env: ConfigEnvironment
        var settings = SSHHostSettings()

        init(alias: String, env: ConfigEnvironment) {
            self.alias = alias
            self.env = env
        }

        /// Reads one file. `active`: whether lines before the first Host/Match apply (ssh: an included
        /// file inherits the state of the line that included it).
        mutating func read(path: String, depth: Int, active: Bool) {
            guard let text = env.readFile(path) else { return }
            settings.filesRead.append(path)
            var active = active
            var lineNo = 0
            for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
                lineNo += 1
                let parsed: (keyword: String, args: [String])?
                do {
                    parsed = try SSHClientConfig.tokenize(rawLine)
                } catch {
                    settings.problems.append(SSHConfigValue(value: error.message, file: path, line: lineNo))
                    continue
                }
                guard let (keyword, args) = parsed else { continue }
                switch keyword {
                case "host":
                    // Include is only followed from lines that apply, so Host lines in included files
                    // are evaluated normally (as in ssh).
                    active = SSHClientConfig.hostMatches(alias, patterns: args)
                case "match":
                    active = false
                    settings.skippedMatchBlocks.append(
                        SSHConfigValue(value: args.joined(separator: " "), file: path, line: lineNo))
                case "include":
                    guard active else { continue }
                    for arg in args { include(arg, from: path, line: lineNo, depth: depth) }
                default:
                    guard active, let first = args.first else { continue }
                    let v = SSHConfigValue(value: first, file: path, line: lineNo)
                    switch keyword {
                    case "hostname": if settings.hostName == nil { settings.hostName = v }
                    case "user": if settings.user == nil { settings.user = v }
                    case "port": if settings.port == nil { settings.port = v }
                    case "identityfile": settings.identityFiles.append(v)
                    case "certificatefile": settings.certificateFiles.append(v)
                    case "identitiesonly": if settings.identitiesOnly == nil { settings.identitiesOnly = v }
                    case "hostkeyalias": if settings.hostKeyAlias == nil { settings.hostKeyAlias = v }
                    case "userknownhostsfile":
                        if settings.userKnownHostsFiles.isEmpty {
                            settings.userKnownHostsFiles = args.map {
                                SSHConfigValue(value: $0, file: path, line: lineNo)
                            }
                        }
                    case "localforward":
                        settings.localForwards.append(
                            SSHConfigValue(value: args.joined(separator: " "), file: path, line: lineNo))
                    case "serveraliveinterval":
                        if settings.serverAliveInterval == nil { settings.serverAliveInterval = v }
                    case "serveralivecountmax":
                        if settings.serverAliveCountMax == nil { settings.serverAliveCountMax = v }
                    case "stricthostkeychecking":
                        if settings.strictHostKeyChecking == nil { settings.strictHostKeyChecking = v }
                    case "connecttimeout": if settings.connectTimeout == nil { settings.connectTimeout = v }
                    default:
                        settings.otherDirectives.append(
                            SSHConfigDirective(
                                keyword: SSHClientConfig.keywordAsWritten(rawLine), arguments: args, file: path,
                                line: lineNo))
                    }
                }
            }
        }

        private mutating func include(_ arg: String, from file: String, line: Int, depth: Int) {
            if depth + 1 > SSHClientConfig.maxIncludeDepth {
                settings.problems.append(
                    SSHConfigValue(
                        value:
                            "Include nested more than \(SSHClientConfig.maxIncludeDepth) levels deep (an include loop?); \"\(arg)\" not read",
                        file: file, line: line))
                return
            }
            var path = SSHClientConfig.expandTilde(arg, home: env.home)
            if !path.hasPrefix("/") {
                path = SSHClientConfig.joinPath(SSHClientConfig.joinPath(env.home, ".ssh"), path)
            }
            let slash = path.lastIndex(of: "/")!
            let dir = String(path[..<slash])
            let name = String(path[path.index(after: slash)...])
            if dir.contains("*") || dir.contains("?") {
                settings.problems.append(
                    SSHConfigValue(
                        value: "Include \"\(arg)\": wildcards are only supported in the last path component; not read",
                        file: file, line: line))
                return
            }
            if name.contains("*") || name.contains("?") {
                let names = (env.listDirectory(dir.isEmpty ? "/" : dir) ?? [])
                    .filter { n in
                        (!n.hasPrefix(".") || name.hasPrefix("."))
                            && SSHClientConfig.globMatch(name, n, caseInsensitive: false)
                    }
                    .sorted()
                for n in names {
                    let p = SSHClientConfig.joinPath(dir, n)
                    if env.fileExists(p) == .regular { read(path: p, depth: depth + 1, active: true) }
                }
            } else {
                // As in ssh, a missing include file is not an error.
                read(path: path, depth: depth + 1, active: true)
            }
        }

        /// Expands `%x` tokens; unknown ones are reported and left as written.
        mutating func expandTokens(
            _ s: String, at where_: SSHConfigValue, allowed: Set<Character>, remoteHost: String, remoteUser: String?
        ) -> String {
            guard s.contains("%") else { return s }
            var out = ""
            var it = s.makeIterator()
            while let c = it.next() {
                guard c == "%" else {
                    out.append(c)
                    continue
                }
                guard let t = it.next() else {
                    settings.problems.append(
                        SSHConfigValue(value: "\"\(s)\": lone % at the end", file: where_.file, line: where_.line))
                    out.append("%")
                    break
                }
                if t == "%" {
                    out.append("%")
                    continue
                }
                guard allowed.contains(t) else {
                    settings.problems.append(
                        SSHConfigValue(
                            value: "\"\(s)\": %\(t) is not supported here", file: where_.file, line: where_.line))
                    out.append("%")
                    out.append(t)
                    continue
                }
                switch t {
                case "h": out += remoteHost
                case "d": out += env.home
                case "u": out += env.user
                case "r": out += remoteUser ?? env.user
                default: break
                }
            }
            return out
        }
    }
}
