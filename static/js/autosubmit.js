// A <select data-autosubmit> submits its form as soon as it changes (the language
// switch, the booking page's specialty filter). Kept here rather than in an inline
// onchange handler, which the Content-Security-Policy forbids; without scripts the
// form's own button (in <noscript>) still submits it.

document.addEventListener("change", (event) => {
  const select = event.target.closest("select[data-autosubmit]");
  if (select?.form) select.form.submit();
});
