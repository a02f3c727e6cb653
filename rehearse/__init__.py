"""`make rehearse`: the synthesized stack deployed into a local AWS emulator (a moto server) and
run under its own role, then audited and examined by the doctor (docs/deploy.md)."""
