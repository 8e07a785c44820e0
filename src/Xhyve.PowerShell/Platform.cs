// The module drives the Linux (KVM) engine host; a macOS engine will widen this.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
