// After a security key or passkey is registered, show it in the list of factors.
document.addEventListener("otp_webauthn.register_complete", () => window.location.reload());
