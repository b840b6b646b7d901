/// `proxy_command` (ssh's `ProxyCommand`): its `%` tokens and how it is run.
///
/// Tokens, as ssh expands them: `%h` the target host, `%p` its port, `%r` the remote user, `%n`
/// the host as the tunnel names it (the `ssh_host` alias, else the host), `%%` a `%`. A command
/// without shell syntax is split into words at blanks and run directly (no shell); one with quotes,
/// `$`, pipes, redirections, globs and the like runs as `/bin/sh -c "exec COMMAND"` (ssh's way).
public enum ProxyCommandLine {
    /// The tokens ssh expands in ProxyCommand that we support.
    public static let tokens: Set<Character> = ["h", "p", "r", "n", "%"]

    /// Characters that need a shell to mean what they say.
    static let shellCharacters: Set<Character> = [
        "|", "&", ";", "<", ">", "(", ")", "$", "`", "\\", "\"", "'", "*", "?", "[", "]", "#", "~", "{", "}", "\n",
    ]

    /// Why `command` cannot be used, or nil.
    public static func problem(_ command: String) -> String? {
        if command.allSatisfy({ $0 == " " || $0 == "\t" }) { return "empty command" }
        if command.contains("\0") { return "contains a NUL character" }
        if command.contains(where: { $0 == "\n" || $0 == "\r" }) { return "contains a line break" }
        var index = command.startIndex
        while index < command.endIndex {
            if command[index] == "%" {
                let next = command.index(after: index)
                guard next < command.endIndex else { return "a lone % at the end (write %% for a %)" }
                if !tokens.contains(command[next]) {
                    return
                        "unknown token %\(command[next]) (supported: %h host, %p port, %r user, %n host as named, %% a %)"
                }
                index = command.index(after: next)
            } else {
                index = command.index(after: index)
            }
        }
        return nil
    }

    /// `command` with its tokens replaced (it must have passed `problem`).
    public static func expand(_ command: String, host: String, port: UInt16, user: String, name: String) -> String {
        var result = ""
        var index = command.startIndex
        while index < command.endIndex {
            let c = command[index]
            let next = command.index(after: index)
            guard c == "%", next < command.endIndex else {
                result.append(c)
                index = next
                continue
            }
            switch command[next] {
            case "h": result += host
            case "p": result += String(port)
            case "r": result += user
            case "n": result += name
            default: result.append(command[next])
            }
            index = command.index(after: next)
        }
        return result
    }

    /// The argument vector to run an expanded command with: its words when it has no shell syntax,
    /// else `/bin/sh -c "exec COMMAND"`.
    public static func arguments(_ expanded: String) -> [String] {
        let words = expanded.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        let needsShell =
            expanded.contains(where: { shellCharacters.contains($0) }) || (words.first?.contains("=") ?? false)
        if needsShell || words.isEmpty { return ["/bin/sh", "-c", "exec \(expanded)"] }
        return words
    }
}
