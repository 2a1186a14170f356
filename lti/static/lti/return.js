// Deep linking: post the signed response back to the platform without a second click.
// The form has a visible button too, for browsers with scripts turned off.
document.addEventListener("DOMContentLoaded", () => {
  const form = document.querySelector("form[data-lti-autosubmit]");
  if (form) form.submit();
});
