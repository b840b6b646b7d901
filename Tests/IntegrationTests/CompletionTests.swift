import EctoTestSupport
import Testing

/// The shell completions come from the command definitions (swift-argument-parser's
/// `--generate-completion-script`); scripts/install-completions.sh installs them. These tests run
/// the real binary and check that each script offers the subcommands.
@Suite struct ShellCompletions {
    struct Shell: Sendable, CustomTestStringConvertible {
        var name: String
        /// Marks the script as one for this shell and for our command.
        var header: String
        /// Lines that offer the subcommands `run` and `check`.
        var offersRun: String
        var offersCheck: String
        var testDescription: String { name }
    }

    @Test(arguments: [
        Shell(
            name: "bash", header: "-F _ecto-tunnel ecto-tunnel", offersRun: "compgen -W 'run ",
            offersCheck: "_ecto-tunnel_check()"),
        Shell(
            name: "zsh", header: "#compdef ecto-tunnel", offersRun: "'run:Run the daemon in the foreground",
            offersCheck: "'check:Validate the config file offline."),
        Shell(
            name: "fish", header: "complete -c 'ecto-tunnel'", offersRun: "-fa 'run' -d 'Run the daemon",
            offersCheck: "-fa 'check' -d 'Validate the config file offline.'"),
    ])
    func scriptOffersTheSubcommands(_ shell: Shell) throws {
        let result = try Subprocess.run(
            try ProductLocator.binary("ecto-tunnel"), ["--generate-completion-script", shell.name])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains(shell.header))
        #expect(result.stdout.contains(shell.offersRun))
        #expect(result.stdout.contains(shell.offersCheck))
    }

    @Test func unknownShellIsRefused() throws {
        let result = try Subprocess.run(
            try ProductLocator.binary("ecto-tunnel"), ["--generate-completion-script", "tcsh"])
        #expect(result.status != 0)
    }
}
