// The systemd user units: the ONE source of every copy. Embedded so that an installed binary needs
// nothing else; everything else is rendered from here by `UnitPaths.unit` (ExecStart= on a given
// binary):
//   units/*.service                    `make units` (ExecStart=/usr/local/bin/ecto-tunnel)
//   the .deb's /usr/lib/systemd/user   `make deb`   (ExecStart=/usr/bin/ecto-tunnel)
//   $(PREFIX)/share/systemd/user       `make install`
//   ~/.config/systemd/user             `ecto-tunnel install` (this binary, the --config path)
// all through `ecto-tunnel unit-file NAME --exec PATH`. Edit the text below, then run `make units`:
// UnitFileTests fails while units/ differs from it.

enum UnitTemplates {
    /// units/ecto-tunnel.service
    static let service = """
        # ecto-tunnel: keeps SSH LocalForward tunnels open (systemd user unit). See docs/systemd.md.
        # Rendered from Sources/EctoOperator/UnitTemplates.swift (edit it there, then `make units`), with
        # the binary's path in ExecStart=: /usr/bin by the package, the real path by `ecto-tunnel install`.

        [Unit]
        Description=ecto-tunnel SSH LocalForward tunnels
        # No After=network-online.target: a user manager cannot order against system units, and the
        # daemon does not need the network at start (tunnels retry with backoff and on network changes).
        # Crash loops: restarts are RestartSec= apart, so at most ceil(20 s / 3 s) = 7 automatic starts fit
        # in 20 s, below StartLimitBurst=8. Automatic restarts therefore never trip the start limit and
        # the unit never stays failed for good after crashes; only a burst of manual restarts can trip it
        # (then `systemctl --user reset-failed ecto-tunnel`). systemd 252 has no RestartSteps= /
        # RestartMaxDelaySec= (254+) for an exponential delay; a crash loop is slowed to one start per 3 s.
        StartLimitIntervalSec=20s
        StartLimitBurst=8

        [Service]
        # The daemon sends READY=1 itself once the config is loaded and every enabled tunnel's listener
        # bind was attempted; STATUS= carries "2/3 tunnels up"; RELOADING=1 / STOPPING=1 around SIGHUP /
        # SIGTERM. Only the main process may notify.
        Type=notify
        NotifyAccess=main
        ExecStart=/usr/local/bin/ecto-tunnel run --config %E/ecto-tunnel/config.toml --socket %t/ecto-tunnel/control.sock
        # systemd 252 has no Type=notify-reload: reload is SIGHUP, answered with RELOADING=1 ... READY=1.
        ExecReload=/bin/kill -HUP $MAINPID
        # Crashes, non-zero exits and watchdog timeouts restart. Exit status 78 means the config is invalid
        # (reported in the log): restarting cannot fix that, so it waits for the operator instead of looping.
        Restart=on-failure
        RestartSec=3s
        RestartPreventExitStatus=78
        # Descriptors: each local client and SSH session costs one. The daemon raises its soft limit to
        # the hard limit at start and keeps a reserve free for the control socket and reconnects;
        # max_clients (default 1024 per tunnel) caps what local users can take (docs/reliability.md).
        # 16384 sets soft and hard: a user manager may lower its own hard limit (usually 524288) but not
        # raise it, so a larger value could keep the unit from starting where that limit is lower.
        LimitNOFILE=16384
        # READY=1 comes at the latest 10 s after start (the daemon's bound on listener binds).
        TimeoutStartSec=30s
        # SIGTERM: listeners close, open connections get --stop-grace (default 5 s), then the daemon exits
        # 0. The stop timeout must exceed the grace (plus 2 s the daemon allows its threads to end).
        TimeoutStopSec=20s
        # WATCHDOG=1 is sent every WatchdogSec/2, only while every tunnel's driver thread and the main loop
        # answer; a stuck supervisor is killed (SIGABRT) and restarted (Result=watchdog).
        WatchdogSec=30s
        # A watchdog timeout sends SIGABRT. The daemon logs which thread stopped answering, has the Swift
        # runtime print every thread's backtrace to the log (its swift-backtrace helper) and ends by
        # SIGABRT, within about 0.3 s (measured under systemd 252 --user). TimeoutAbortSec= (default:
        # TimeoutStopSec=) only bounds an abort that hangs anyway: SIGKILL after 5 s.
        TimeoutAbortSec=5s
        # mixed: SIGABRT (and SIGTERM) go to the main process only, SIGKILL to the whole unit. With the
        # default control-group, the watchdog's SIGABRT also went to every process of the unit, and so
        # killed the backtrace helper the daemon spawns at that moment ("Backtracing ... failed"). The
        # daemon runs no other processes.
        KillMode=mixed

        # SSH_AUTH_SOCK: a service does not inherit the login session's environment. `ecto-tunnel install`
        # writes SSH_AUTH_SOCK here when the agent socket has a stable path (under $XDG_RUNTIME_DIR or
        # $HOME: gpg-agent, gnome-keyring, a systemd ssh-agent.socket, 1Password); see docs/systemd.md.
        EnvironmentFile=-%E/ecto-tunnel/environment
        # A key passphrase as a systemd credential (the config says identity_passphrase_credential =
        # "ecto-passphrase"); the file is readable only by this service, under $CREDENTIALS_DIRECTORY.
        #LoadCredential=ecto-passphrase:%E/ecto-tunnel/passphrase

        \(sandboxAndInstall)
        """

    /// units/ecto-tunnel@.service
    static let template = """
        # ecto-tunnel@NAME: one more independent daemon per instance (systemd user template unit).
        # Config: $XDG_CONFIG_HOME/ecto-tunnel/NAME.toml; control socket: $XDG_RUNTIME_DIR/ecto-tunnel/NAME.sock.
        # Start: systemctl --user enable --now ecto-tunnel@NAME. See docs/systemd.md.
        # Rendered from Sources/EctoOperator/UnitTemplates.swift (edit it there, then `make units`), with
        # the binary's path in ExecStart=: /usr/bin by the package, the real path by `ecto-tunnel install`.

        [Unit]
        Description=ecto-tunnel SSH LocalForward tunnels (%i)
        # No After=network-online.target: a user manager cannot order against system units, and the
        # daemon does not need the network at start (tunnels retry with backoff and on network changes).
        # Crash loops: restarts are RestartSec= apart, so at most ceil(20 s / 3 s) = 7 automatic starts fit
        # in 20 s, below StartLimitBurst=8. Automatic restarts therefore never trip the start limit and
        # the unit never stays failed for good after crashes; only a burst of manual restarts can trip it
        # (then `systemctl --user reset-failed ecto-tunnel`). systemd 252 has no RestartSteps= /
        # RestartMaxDelaySec= (254+) for an exponential delay; a crash loop is slowed to one start per 3 s.
        StartLimitIntervalSec=20s
        StartLimitBurst=8

        [Service]
        # The daemon sends READY=1 itself once the config is loaded and every enabled tunnel's listener
        # bind was attempted; STATUS= carries "2/3 tunnels up"; RELOADING=1 / STOPPING=1 around SIGHUP /
        # SIGTERM. Only the main process may notify.
        Type=notify
        NotifyAccess=main
        ExecStart=/usr/local/bin/ecto-tunnel run --config %E/ecto-tunnel/%i.toml --socket %t/ecto-tunnel/%i.sock
        # systemd 252 has no Type=notify-reload: reload is SIGHUP, answered with RELOADING=1 ... READY=1.
        ExecReload=/bin/kill -HUP $MAINPID
        # Crashes, non-zero exits and watchdog timeouts restart. Exit status 78 means the config is invalid
        # (reported in the log): restarting cannot fix that, so it waits for the operator instead of looping.
        Restart=on-failure
        RestartSec=3s
        RestartPreventExitStatus=78
        # Descriptors: each local client and SSH session costs one. The daemon raises its soft limit to
        # the hard limit at start and keeps a reserve free for the control socket and reconnects;
        # max_clients (default 1024 per tunnel) caps what local users can take (docs/reliability.md).
        # 16384 sets soft and hard: a user manager may lower its own hard limit (usually 524288) but not
        # raise it, so a larger value could keep the unit from starting where that limit is lower.
        LimitNOFILE=16384
        # READY=1 comes at the latest 10 s after start (the daemon's bound on listener binds).
        TimeoutStartSec=30s
        # SIGTERM: listeners close, open connections get --stop-grace (default 5 s), then the daemon exits
        # 0. The stop timeout must exceed the grace (plus 2 s the daemon allows its threads to end).
        TimeoutStopSec=20s
        # WATCHDOG=1 is sent every WatchdogSec/2, only while every tunnel's driver thread and the main loop
        # answer; a stuck supervisor is killed (SIGABRT) and restarted (Result=watchdog).
        WatchdogSec=30s
        # A watchdog timeout sends SIGABRT. The daemon logs which thread stopped answering, has the Swift
        # runtime print every thread's backtrace to the log (its swift-backtrace helper) and ends by
        # SIGABRT, within about 0.3 s (measured under systemd 252 --user). TimeoutAbortSec= (default:
        # TimeoutStopSec=) only bounds an abort that hangs anyway: SIGKILL after 5 s.
        TimeoutAbortSec=5s
        # mixed: SIGABRT (and SIGTERM) go to the main process only, SIGKILL to the whole unit. With the
        # default control-group, the watchdog's SIGABRT also went to every process of the unit, and so
        # killed the backtrace helper the daemon spawns at that moment ("Backtracing ... failed"). The
        # daemon runs no other processes.
        KillMode=mixed

        # SSH_AUTH_SOCK: a service does not inherit the login session's environment. `ecto-tunnel install`
        # writes SSH_AUTH_SOCK here when the agent socket has a stable path (under $XDG_RUNTIME_DIR or
        # $HOME: gpg-agent, gnome-keyring, a systemd ssh-agent.socket, 1Password); see docs/systemd.md.
        EnvironmentFile=-%E/ecto-tunnel/environment
        # Per-instance overrides (e.g. another SSH_AUTH_SOCK).
        EnvironmentFile=-%E/ecto-tunnel/%i.environment
        # A key passphrase as a systemd credential (the config says identity_passphrase_credential =
        # "ecto-passphrase"); the file is readable only by this service, under $CREDENTIALS_DIRECTORY.
        #LoadCredential=ecto-passphrase:%E/ecto-tunnel/passphrase

        \(sandboxAndInstall)
        """

    /// The end both units share, word for word: the runtime directory, the sandboxing a user
    /// manager can apply, and [Install].
    private static let sandboxAndInstall = """
        # The control socket's directory, $XDG_RUNTIME_DIR/ecto-tunnel (0700). Kept across restarts and
        # shared with ecto-tunnel@.service instances, so it is never removed.
        RuntimeDirectory=ecto-tunnel
        RuntimeDirectoryMode=0700
        RuntimeDirectoryPreserve=yes
        UMask=0077

        # Sandboxing that a user manager applies without privileges (each checked under systemd 252 --user):
        NoNewPrivileges=yes
        RestrictSUIDSGID=yes
        LockPersonality=yes
        RestrictRealtime=yes
        RestrictNamespaces=yes
        SystemCallArchitectures=native
        SystemCallFilter=@system-service
        # AF_NETLINK: the rtnetlink watcher that notices network changes.
        RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
        # Filesystem sandboxing needs a mount namespace. A user manager (no CAP_SYS_ADMIN) on systemd 252
        # skips these settings silently unless PrivateUsers=yes, which needs unprivileged user namespaces
        # (not available everywhere: it fails with 226/NAMESPACE in containers, Ubuntu's AppArmor policy
        # restricts it). So PrivateUsers= is left out, and the lines below take effect only where the
        # manager can set up the namespace (newer systemd, root's manager). They are written to be correct
        # then: the daemon writes only the config directory (`target` persists to config.toml, atomically
        # through a temp file next to it), ~/.ssh (host_key_policy = "accept-new" appends to known_hosts;
        # a known_hosts elsewhere must be added here) and the runtime directory (RuntimeDirectory= above
        # is writable by construction). PrivateTmp= would hide agent sockets in /tmp (/tmp/ssh-*/agent.*),
        # which are per-login anyway: use a stable socket path.
        ProtectSystem=strict
        ProtectHome=read-only
        ReadWritePaths=-%E/ecto-tunnel -%h/.ssh
        PrivateTmp=yes
        ProtectKernelTunables=yes
        ProtectControlGroups=yes
        # Left out: ProtectKernelModules=, ProtectClock=, PrivateDevices=, CapabilityBoundingSet= all fail
        # in a user manager with 218/CAPABILITIES (they drop capabilities the manager does not hold).

        [Install]
        WantedBy=default.target
        """
}
